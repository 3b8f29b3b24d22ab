//! The module layout stays layered: within the edge and the worker, no top-level
//! module imports (through `crate::`) one that imports it back, directly or round a
//! longer circle. Read from the sources, so a new circle fails here.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::Path,
};

/// Each top-level module of `src` (a `name.rs` and its `name/` folder) and the
/// top-level modules its non-test code names as `crate::x`.
fn imports(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut files = vec![src.to_path_buf()];
    while let Some(path) = files.pop() {
        if path.is_dir() {
            for entry in fs::read_dir(&path).expect("read_dir") {
                files.push(entry.expect("entry").path());
            }
            continue;
        }
        let rel = path.strip_prefix(src).expect("under src");
        let top = rel.components().next().expect("a component");
        let top = top.as_os_str().to_string_lossy();
        let top = top.trim_end_matches(".rs").to_owned();
        // `foo/tests.rs` is `foo`'s unit tests (`#[cfg(test)] mod tests;`): not an import.
        let unit_tests = path.file_name().is_some_and(|n| n == "tests.rs");
        if path.extension().is_none_or(|e| e != "rs") || top == "main" || top == "lib" || unit_tests
        {
            continue;
        }
        let text = fs::read_to_string(&path).expect("read");
        // Unit tests may reach anywhere; comments (doc links) import nothing.
        let code: String = text
            .split("#[cfg(test)]")
            .next()
            .unwrap_or("")
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        let deps = graph.entry(top.clone()).or_default();
        for name in crate_paths(&code) {
            if name != top {
                deps.insert(name);
            }
        }
    }
    graph
}

/// The first segment of every `crate::` path, including those inside
/// `use crate::{a, b::c}` groups.
fn crate_paths(code: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let word = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find("};").unwrap_or(group.len())];
            // Top-level items of the group: at brace depth 0.
            let mut depth = 0;
            let mut start = 0;
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        names.insert(word(&group[start..j]));
                        start = j + 1;
                    }
                    _ => {}
                }
            }
            names.insert(word(&group[start..]));
        } else {
            names.insert(word(rest));
        }
    }
    names.retain(|n| !n.is_empty());
    names
}

/// A circle of imports, if there is one.
fn circle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        graph: &BTreeMap<String, BTreeSet<String>>,
        node: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut circle = path[at..].to_vec();
            circle.push(node.to_owned());
            return Some(circle);
        }
        if !done.insert(node.to_owned()) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if graph.contains_key(next) {
                if let Some(c) = visit(graph, next, path, done) {
                    return Some(c);
                }
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|n| visit(graph, n, &mut Vec::new(), &mut done))
}

#[test]
fn crate_paths_read_single_paths_and_groups() {
    let code = "use crate::{a, b::{c, d}, e::F};\nlet x = crate::g::h();";
    let names: Vec<String> = crate_paths(code).into_iter().collect();
    assert_eq!(names, ["a", "b", "e", "g"]);
    let graph = BTreeMap::from([
        ("a".to_owned(), BTreeSet::from(["b".to_owned()])),
        ("b".to_owned(), BTreeSet::from(["a".to_owned()])),
    ]);
    assert_eq!(
        circle(&graph),
        Some(vec!["a".to_owned(), "b".to_owned(), "a".to_owned()])
    );
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for krate in ["edge", "worker", "codec"] {
        let graph = imports(&root.join(krate).join("src"));
        assert!(graph.len() > 5, "{krate}: modules found: {graph:?}");
        assert_eq!(circle(&graph), None, "{krate}: an import circle");
    }
}
