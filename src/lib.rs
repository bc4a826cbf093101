//! echoloop
