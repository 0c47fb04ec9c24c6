//! The module map of `src/lib.rs` is the truth: every `use crate::...` line and `crate::x::` path
//! in `src/**/*.rs` is an arrow between two top-level modules, and an arrow the map does not list
//! fails this test.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The arrows of the map in `src/lib.rs`: module → modules it may use; `leaves` anyone may use.
struct Map {
    arrows: BTreeMap<String, BTreeSet<String>>,
    leaves: BTreeSet<String>,
}

impl Map {
    fn parse(lib: &str) -> Map {
        let mut arrows = BTreeMap::new();
        let mut leaves = BTreeSet::new();
        let mut inside = false;
        for line in lib.lines() {
            let Some(doc) = line.strip_prefix("//!") else {
                continue;
            };
            let doc = doc.trim();
            if doc == "arrows:" {
                inside = true;
                continue;
            }
            if !inside {
                continue;
            }
            if doc.starts_with("```") {
                break;
            }
            let (from, to) = doc
                .split_once('─')
                .unwrap_or_else(|| panic!("not an arrow line in the map: {doc:?}"));
            let to = to.trim_start_matches(['─', '►']);
            let targets: BTreeSet<String> = to.split_whitespace().map(str::to_owned).collect();
            match from.trim() {
                "leaves" => leaves = targets,
                module => {
                    arrows.insert(module.to_owned(), targets);
                }
            }
        }
        assert!(!arrows.is_empty(), "src/lib.rs has no `arrows:` block");
        Map { arrows, leaves }
    }

    fn allows(&self, from: &str, to: &str) -> bool {
        if self.leaves.contains(to) {
            return true;
        }
        self.arrows
            .get(from)
            .is_some_and(|targets| targets.contains(to))
    }
}

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

/// The top-level modules a source text names: `use crate::x...` (a `{a, b}` group included) and
/// `crate::x::` paths, comments left out.
fn uses(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let code: String = text
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        let after = &rest[at + "crate::".len()..];
        let preceded_by_ident = rest[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':');
        if !preceded_by_ident {
            if let Some(group) = after.strip_prefix('{') {
                // `use crate::{a, b::c};`
                let end = group.find('}').unwrap_or(group.len());
                for item in group[..end].split(',') {
                    let name: String = item
                        .trim()
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty() {
                        found.insert(name);
                    }
                }
            } else {
                let name: String = after
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    found.insert(name);
                }
            }
        }
        rest = after;
    }
    found
}

#[test]
fn every_arrow_between_modules_is_in_the_map() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = root.join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let map = Map::parse(&lib);
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut outside = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&src).unwrap();
        let first = relative
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let module = first.trim_end_matches(".rs").to_owned();
        if module == "lib" || module == "main" {
            continue;
        }
        assert!(
            map.arrows.contains_key(&module) || map.leaves.contains(&module),
            "src/{}: module {module} is not in the map of src/lib.rs",
            relative.display()
        );
        let text = std::fs::read_to_string(file).unwrap();
        for used in uses(&text) {
            if used == module || used == "self" || used == "super" {
                continue;
            }
            if map.leaves.contains(&module) && !map.leaves.contains(&used) {
                outside.push(format!(
                    "src/{}: leaf {module} uses {used}",
                    relative.display()
                ));
            } else if !map.allows(&module, &used) {
                outside.push(format!("src/{}: {module} ─► {used}", relative.display()));
            }
        }
    }
    assert!(
        outside.is_empty(),
        "arrows outside the map of src/lib.rs:\n{}",
        outside.join("\n")
    );
}

#[test]
fn the_readme_shows_the_same_arrows() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib = std::fs::read_to_string(root.join("src/lib.rs")).unwrap();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let from_lib: Vec<&str> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("//!"))
        .map(str::trim)
        .skip_while(|l| *l != "arrows:")
        .take_while(|l| !l.starts_with("```"))
        .collect();
    let from_readme: Vec<&str> = readme
        .lines()
        .map(str::trim)
        .skip_while(|l| *l != "arrows:")
        .take_while(|l| !l.starts_with("```"))
        .collect();
    assert_eq!(
        from_readme, from_lib,
        "README's arrows differ from src/lib.rs's"
    );
}

#[test]
fn uses_finds_paths_and_groups_and_skips_comments() {
    let text = "use crate::sync::{Engine, Mode};\nuse crate::{db, table::TableId};\n\
                // crate::fake::x\nlet x = crate::failpoint::hit(\"a\");\n";
    let found: Vec<String> = uses(text).into_iter().collect();
    assert_eq!(found, ["db", "failpoint", "sync", "table"]);
}
