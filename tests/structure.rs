//! The codebase's shape, checked: no module imports a module that imports it
//! back, directly or through others (the imports form layers), and no
//! non-test source file grows past the size one concept needs.
//! Both crates (`src/` and `loadgen/src/`) are read as text; a parent and its
//! own child modules may refer to each other (that is how Rust nests), any
//! other pair may not.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Lines a non-test source file may have. One concept per file keeps files
/// well under this; a file near it is two concepts waiting to be split.
const MAX_LINES: usize = 420;

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|x| x == "rs") {
            found.push(path);
        }
    }
}

/// `src/conn/input.rs` -> `conn::input`; `src/lib.rs` -> `` (the root).
fn module_path(root: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(root).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts.join("::")
}

/// Test-only code: files of test modules, and everything after the first
/// `#[cfg(test)]` in a file (inline test modules sit at the end).
fn is_test_module(path: &str) -> bool {
    path.split("::")
        .any(|p| p == "tests" || p == "testutil" || p == "test_mode")
}

fn non_test_text(text: &str) -> &str {
    match text.find("#[cfg(test)]") {
        Some(at) => &text[..at],
        None => text,
    }
}

/// `text` without its comment lines: a doc link (`[crate::x::Y]`) names a
/// module without importing it.
fn code_only(text: &str) -> String {
    text.lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The paths a file names through `crate::` or `super::`, with `use`
/// groups (`crate::{a, b::c}`) expanded, as absolute module paths.
fn referenced_paths(text: &str, module: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (prefix, base) in [
        ("crate::", String::new()),
        ("super::", parent_for_super(module)),
    ] {
        let mut rest = text;
        while let Some(at) = rest.find(prefix) {
            // `self::super::` or an identifier ending in "crate" are not ours.
            let before = rest[..at].chars().last();
            rest = &rest[at + prefix.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            for tail in expand(rest) {
                let full = if base.is_empty() {
                    tail
                } else {
                    format!("{base}::{tail}")
                };
                found.push(full);
            }
        }
    }
    found
}

/// The module `super::` names from inside `module`.
fn parent_for_super(module: &str) -> String {
    match module.rfind("::") {
        Some(at) => module[..at].to_string(),
        None => String::new(),
    }
}

/// `a::b::{c, d::e}; ...` -> [`a::b::c`, `a::b::d::e`]; `a::b::C` -> [`a::b::C`].
fn expand(text: &str) -> Vec<String> {
    let mut path = String::new();
    for (i, c) in text.char_indices() {
        if c.is_alphanumeric() || c == '_' || c == ':' {
            path.push(c);
        } else if c == '{' {
            let mut depth = 1;
            let mut end = i + 1;
            for (j, d) in text[i + 1..].char_indices() {
                match d {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    _ => {}
                }
                if depth == 0 {
                    end = i + 1 + j;
                    break;
                }
            }
            let inner = &text[i + 1..end];
            let mut out = Vec::new();
            let mut depth = 0;
            let mut start = 0;
            for (j, d) in inner.char_indices() {
                match d {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        for t in expand(inner[start..j].trim_start()) {
                            out.push(format!("{path}{t}"));
                        }
                        start = j + 1;
                    }
                    _ => {}
                }
            }
            for t in expand(inner[start..].trim_start()) {
                out.push(format!("{path}{t}"));
            }
            return out;
        } else {
            break;
        }
    }
    vec![path.trim_end_matches(':').to_string()]
}

/// The longest known module that `path` starts with.
fn owning_module(path: &str, modules: &BTreeSet<String>) -> Option<String> {
    let parts: Vec<&str> = path.split("::").filter(|p| !p.is_empty()).collect();
    (1..=parts.len())
        .rev()
        .map(|n| parts[..n].join("::"))
        .find(|m| modules.contains(m))
}

fn is_ancestor(a: &str, b: &str) -> bool {
    a.is_empty() || b.starts_with(&format!("{a}::"))
}

struct Crate {
    /// module -> (file, non-test text)
    modules: BTreeMap<String, (PathBuf, String)>,
}

fn read_crate(root: &Path) -> Crate {
    let mut files = Vec::new();
    rust_files(root, &mut files);
    let mut modules = BTreeMap::new();
    for file in files {
        let module = module_path(root, &file);
        if module.starts_with("bin") || is_test_module(&module) {
            continue;
        }
        let text = fs::read_to_string(&file).unwrap();
        modules.insert(module, (file, text));
    }
    Crate { modules }
}

/// Which module imports which: `(from, to)`, leaving out a module's
/// references to its own ancestors and descendants.
fn imports(krate: &Crate) -> BTreeSet<(String, String)> {
    let names: BTreeSet<String> = krate.modules.keys().cloned().collect();
    let mut edges: BTreeSet<(String, String)> = BTreeSet::new();
    for (module, (_, text)) in &krate.modules {
        for path in referenced_paths(&code_only(non_test_text(text)), module) {
            if let Some(target) = owning_module(&path, &names) {
                if target != *module
                    && !is_ancestor(&target, module)
                    && !is_ancestor(module, &target)
                {
                    edges.insert((module.clone(), target));
                }
            }
        }
    }
    edges
}

/// Every import cycle, of any length, as `a -> b -> ... -> a`: for each
/// module, the shortest path back to itself (a breadth-first search), each
/// cycle reported once, from its smallest module.
fn cycles(krate: &Crate) -> Vec<String> {
    let edges = imports(krate);
    let mut next: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (a, b) in &edges {
        next.entry(a.as_str()).or_default().push(b.as_str());
    }
    let mut found = BTreeSet::new();
    for &start in next.keys() {
        let mut came_from: BTreeMap<&str, &str> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([start]);
        while let Some(at) = queue.pop_front() {
            for &to in next.get(at).into_iter().flatten() {
                if to == start {
                    let mut path = vec![at];
                    while let Some(&prev) = came_from.get(path.last().unwrap()) {
                        path.push(prev);
                    }
                    path.reverse();
                    // Report each cycle once: only from its smallest module.
                    if path.iter().all(|m| start <= *m) {
                        found.insert(format!("{} -> {start}", path.join(" -> ")));
                    }
                    queue.clear();
                    break;
                }
                if to != start && !came_from.contains_key(to) {
                    came_from.insert(to, at);
                    queue.push_back(to);
                }
            }
        }
    }
    found.into_iter().collect()
}

fn crate_roots() -> Vec<PathBuf> {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    vec![here.join("src"), here.join("loadgen/src")]
}

#[test]
fn no_module_imports_a_module_that_imports_it_back() {
    let mut found = Vec::new();
    for root in crate_roots() {
        for cycle in cycles(&read_crate(&root)) {
            found.push(format!("{}: {cycle}", root.display()));
        }
    }
    assert!(found.is_empty(), "module cycles:\n{}", found.join("\n"));
}

#[test]
fn no_source_file_holds_more_than_one_concept_worth_of_lines() {
    let mut long = Vec::new();
    for root in crate_roots() {
        for (_, (file, text)) in read_crate(&root).modules {
            let lines = non_test_text(&text).lines().count();
            if lines > MAX_LINES {
                long.push(format!("{} has {lines} lines", file.display()));
            }
        }
    }
    assert!(
        long.is_empty(),
        "over {MAX_LINES} lines:\n{}",
        long.join("\n")
    );
}

#[test]
fn the_checker_sees_a_cycle_and_expands_use_groups() {
    assert_eq!(
        expand("a::{b, c::{d, e}};"),
        vec!["a::b", "a::c::d", "a::c::e"]
    );
    let mut modules = BTreeMap::new();
    modules.insert(
        "x".to_string(),
        (PathBuf::from("x.rs"), "use crate::y::Y;".to_string()),
    );
    modules.insert(
        "y".to_string(),
        (PathBuf::from("y.rs"), "use super::x;".to_string()),
    );
    modules.insert(
        "x::inner".to_string(),
        (PathBuf::from("x/inner.rs"), "use crate::x::X;".to_string()),
    );
    assert_eq!(cycles(&Crate { modules }), vec!["x -> y -> x"]);
}

/// A cycle through three modules is one too: none imports the one that
/// imports it, but each reaches itself.
#[test]
fn the_checker_sees_a_longer_cycle_once() {
    let mut modules = BTreeMap::new();
    for (name, text) in [
        ("a", "use crate::b::B; use crate::e::E;"),
        ("b", "use crate::c::C;"),
        ("c", "use crate::a::A;"),
        ("d", "use crate::a::A;"),
        // A doc link is not an import: no cycle a -> e -> a.
        ("e", "/// See [`crate::a::A`].\nstruct E;"),
    ] {
        let file = PathBuf::from(format!("{name}.rs"));
        modules.insert(name.to_string(), (file, text.to_string()));
    }
    assert_eq!(cycles(&Crate { modules }), vec!["a -> b -> c -> a"]);
}

/// `unsafe` code, in either crate, is only in its `sys` module (`sys.rs` or
/// `sys/`): the crate root denies `unsafe_code` and allows it on `mod sys`
/// alone, and this keeps a new `#[allow(unsafe_code)]` from slipping past.
#[test]
fn unsafe_code_lives_in_sys_only() {
    let mut found = Vec::new();
    for root in crate_roots() {
        let mut files = Vec::new();
        rust_files(&root, &mut files);
        for file in files {
            let rel = file.strip_prefix(&root).unwrap();
            if rel.starts_with("sys") || rel == Path::new("sys.rs") {
                continue;
            }
            let code = code_only(&fs::read_to_string(&file).unwrap());
            let mut lines = code.lines().map(str::trim).peekable();
            while let Some(line) = lines.next() {
                let allowed_here = line == "#[allow(unsafe_code)]"
                    && rel == Path::new("lib.rs")
                    && lines.peek() == Some(&"mod sys;");
                let unsafe_here = ["unsafe {", "unsafe fn", "unsafe impl", "allow(unsafe_code)"]
                    .iter()
                    .any(|u| line.contains(u));
                if unsafe_here && !allowed_here {
                    found.push(format!("{}: {line}", file.display()));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "unsafe outside sys:\n{}",
        found.join("\n")
    );
}
