//! loadgen: drives TCP or UDP load at an echo server and verifies every byte.
