//! The shape of the code, checked: no import cycle between the modules of
//! `server/src`, no source file that has grown past ~600 lines of code, and
//! no file that names a document the repository does not have.
//!
//! The module graph is read from the sources: every path through `crate::`,
//! `super::` or `self::` (in `use` items and inline), comments and string
//! literals left out. A path from module M to module P is an edge between
//! the two siblings under their nearest common ancestor that hold M and P:
//! `store::wal::frame` using `crate::store::portable` is the edge `wal ->
//! portable` under `store`; `auth::password` using `crate::lockout` is
//! `auth -> lockout` at the top. A module and its own descendants may use
//! each other. Every set of siblings must then be acyclic.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a file under `src`: `store/wal/mod.rs` is
/// `["store", "wal"]`, `lib.rs` is `[]`.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap();
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let last = parts.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    if !matches!(stem, "mod" | "lib" | "main") {
        parts.push(stem.to_owned());
    }
    parts
}

/// The code of a Rust source without comments, string and char literals.
fn code_only(text: &str) -> String {
    let b: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < b.len() && b[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == '/' && b.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == '*' && b.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if c == 'r' && (next == Some('"') || next == Some('#')) && !prev_is_ident(&b, i) {
            let mut hashes = 0;
            let mut j = i + 1;
            while b.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= b.len() {
                    break;
                }
                if b[j] == '"' && (0..hashes).all(|k| b.get(j + 1 + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            out.push_str("\"\"");
            i = j;
        } else if c == '"' {
            i += 1;
            while i < b.len() && b[i] != '"' {
                if b[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' && (b.get(i + 2) == Some(&'\'') || (next == Some('\\'))) {
            // A char literal ('x', '\n', '\''), not a lifetime.
            i += 1;
            while i < b.len() && b[i] != '\'' {
                if b[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("' '");
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn prev_is_ident(b: &[char], i: usize) -> bool {
    i > 0 && (b[i - 1].is_alphanumeric() || b[i - 1] == '_')
}

/// Every path a use tree names, from its start (`crate`, `super`, `self`).
fn expand_use(tree: &str) -> Vec<Vec<String>> {
    fn parse(tokens: &[String], at: &mut usize, prefix: &[String], out: &mut Vec<Vec<String>>) {
        let mut path = prefix.to_vec();
        while *at < tokens.len() {
            match tokens[*at].as_str() {
                "{" => {
                    *at += 1;
                    while *at < tokens.len() && tokens[*at] != "}" {
                        parse(tokens, at, &path, out);
                        if tokens.get(*at).is_some_and(|t| t == ",") {
                            *at += 1;
                        }
                    }
                    *at += 1;
                    return;
                }
                "," | "}" => break,
                "::" => *at += 1,
                "as" => *at += 2,
                "*" => *at += 1,
                "self" if !path.is_empty() => *at += 1,
                ident => {
                    path.push(ident.to_owned());
                    *at += 1;
                }
            }
        }
        out.push(path);
    }
    let mut tokens = Vec::new();
    let mut word = String::new();
    let chars: Vec<char> = tree.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_alphanumeric() || c == '_' {
            word.push(c);
        } else {
            if !word.is_empty() {
                tokens.push(std::mem::take(&mut word));
            }
            if c == ':' && chars.get(i + 1) == Some(&':') {
                tokens.push("::".into());
                i += 1;
            } else if "{},*".contains(c) {
                tokens.push(c.to_string());
            }
        }
        i += 1;
    }
    if !word.is_empty() {
        tokens.push(word);
    }
    let mut out = Vec::new();
    let mut at = 0;
    parse(&tokens, &mut at, &[], &mut out);
    out
}

/// The paths `code` names: `use` trees, and inline `crate::`/`super::` paths.
fn paths_in(code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("use ") {
        let before = rest[..at].chars().last();
        rest = &rest[at + 4..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let end = rest.find(';').unwrap_or(rest.len());
        let tree = rest[..end].trim();
        if tree.starts_with("crate") || tree.starts_with("super") || tree.starts_with("self") {
            out.extend(expand_use(tree));
        }
    }
    let words: Vec<char> = code.chars().collect();
    let text: String = words.iter().collect();
    for start in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(at) = text[from..].find(start) {
            let at = from + at;
            from = at + start.len();
            if at > 0 && text[..at].chars().last().is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let path: String =
                text[at..].chars().take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':').collect();
            out.push(path.split("::").filter(|s| !s.is_empty()).map(str::to_owned).collect());
        }
    }
    out
}

/// `path` (starting `crate`, `super` or `self`, as seen from `module`)
/// resolved to the longest known module it goes through.
fn resolve(module: &[String], path: &[String], modules: &BTreeSet<Vec<String>>) -> Option<Vec<String>> {
    let mut base: Vec<String> = match path.first().map(String::as_str) {
        Some("crate") => Vec::new(),
        Some("super") | Some("self") => module.to_vec(),
        _ => return None,
    };
    let mut rest = path;
    if rest.first().is_some_and(|p| p == "crate") {
        rest = &rest[1..];
    }
    while let Some(first) = rest.first() {
        match first.as_str() {
            "super" => {
                base.pop()?;
                rest = &rest[1..];
            }
            "self" => rest = &rest[1..],
            _ => break,
        }
    }
    let mut best = base.clone();
    for seg in rest {
        base.push(seg.clone());
        if modules.contains(&base) {
            best = base.clone();
        } else {
            break;
        }
    }
    Some(best)
}

/// The edges between siblings, by parent: parent -> (from -> to).
fn sibling_edges(src: &Path) -> BTreeMap<Vec<String>, BTreeMap<String, BTreeSet<String>>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_of(src, f)).collect();
    let mut edges: BTreeMap<Vec<String>, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for file in &files {
        let module = module_of(src, file);
        let code = code_only(&std::fs::read_to_string(file).unwrap());
        for path in paths_in(&code) {
            let Some(target) = resolve(&module, &path, &modules) else { continue };
            let common = module.iter().zip(&target).take_while(|(a, b)| a == b).count();
            let (Some(from), Some(to)) = (module.get(common), target.get(common)) else { continue };
            edges.entry(module[..common].to_vec()).or_default().entry(from.clone()).or_default().insert(to.clone());
        }
    }
    edges
}

/// A cycle in `graph`, if any, as the modules along it.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(node.to_owned(), 1);
        stack.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            match state.get(next.as_str()).copied().unwrap_or(0) {
                1 => {
                    let at = stack.iter().position(|n| n == next).unwrap_or(0);
                    let mut cycle = stack[at..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(next, graph, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(node.to_owned(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in graph.keys() {
        if state.get(node.as_str()).copied().unwrap_or(0) == 0 {
            if let Some(c) = visit(node, graph, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

#[test]
fn no_import_cycle_between_the_servers_modules() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let edges = sibling_edges(&src);
    // The graph is read at all: the top level has its known edges.
    let top = &edges[&Vec::new()];
    assert!(top["grant"].contains("auth") && top["auth"].contains("lockout"), "{top:?}");
    for (parent, graph) in &edges {
        if let Some(cycle) = find_cycle(graph) {
            panic!("import cycle under `crate::{}`: {}", parent.join("::"), cycle.join(" -> "));
        }
    }
}

/// The checker finds a cycle where there is one, and reads use trees,
/// inline paths and `super::` right (comments and strings aside).
#[test]
fn the_cycle_check_sees_what_it_should() {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    g.entry("a".into()).or_default().insert("b".into());
    g.entry("b".into()).or_default().insert("c".into());
    assert_eq!(find_cycle(&g), None);
    g.entry("c".into()).or_default().insert("a".into());
    assert_eq!(find_cycle(&g), Some(vec!["a".into(), "b".into(), "c".into(), "a".into()]));
    let code = code_only(
        "use crate::{a::{B, c::D}, e};\n// use crate::commented;\nlet s = \"crate::in_string\";\nlet x = super::f::g();\n",
    );
    let paths = paths_in(&code);
    let path = |p: &str| p.split("::").map(str::to_owned).collect::<Vec<_>>();
    for p in ["crate::a::B", "crate::a::c::D", "crate::e", "super::f::g"] {
        assert!(paths.contains(&path(p)), "{p} in {paths:?}");
    }
    assert!(!paths.iter().any(|p| p.iter().any(|s| s == "commented" || s == "in_string")), "{paths:?}");
}

/// Lines of a source file before its unit tests (`#[cfg(test)] mod`).
fn code_lines(text: &str) -> usize {
    let end = text.find("#[cfg(test)]\nmod ").unwrap_or(text.len());
    text[..end].lines().count()
}

#[test]
fn no_source_file_over_600_lines_of_code() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for dir in ["core/src", "server/src"] {
        rust_files(&root.join(dir), &mut files);
    }
    assert!(files.len() > 20);
    let long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let n = code_lines(&std::fs::read_to_string(f).unwrap());
            (n > 600).then(|| format!("{} ({n} lines)", f.display()))
        })
        .collect();
    assert!(long.is_empty(), "split by concern: {long:?}");
}

/// Every `*.md` a tracked file names exists in the repository.
#[test]
fn no_file_names_a_document_that_is_not_here() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with('.') || name == "target" {
                continue;
            }
            if path.is_dir() {
                walk(&path, out);
            } else if ["rs", "md", "toml", "sh", "py"].iter().any(|e| name.ends_with(&format!(".{e}"))) {
                out.push(path);
            }
        }
    }
    walk(&root, &mut files);
    let mut missing = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        for (at, _) in text.match_indices(".md") {
            let start = text[..at]
                .rfind(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-' || c == '/' || c == '.'))
                .map_or(0, |i| i + 1);
            let name = &text[start..at + 3];
            if name.len() <= 3 || !name.chars().next().is_some_and(|c| c.is_ascii_uppercase() || c.is_ascii_lowercase())
            {
                continue;
            }
            let here = file.parent().unwrap().join(name);
            let found = here.exists() || root.join(name).exists() || root.join("docs").join(name).exists();
            if !found {
                missing.push(format!("{} names {name}", file.strip_prefix(&root).unwrap_or(file).display()));
            }
        }
    }
    assert!(missing.is_empty(), "{missing:#?}");
}
