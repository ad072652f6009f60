//! The layering of trtllm-core: every `crate::…` path in the engine's code must point to a module
//! of a lower layer than the file's own (or into its own folder). The table is ARCHITECTURE.md's
//! "Layers"; a new top-level module must be added to it here.
//!
//! Test code (`#[cfg(test)]` modules at the end of a file, `tests_*.rs` files) may use anything:
//! it is not part of the engine's dependency graph.

use std::path::{Path, PathBuf};

/// `(module, layer)`: a module may use modules of strictly lower layers and itself. Layer 0 is
/// the base (error, dtype, mapping, env), one group whose files may use each other.
const LAYERS: &[(&str, u32)] = &[
    ("error", 0),
    ("dtype", 0),
    ("mapping", 0),
    ("env", 0),
    ("text", 1),
    ("device", 1),
    ("gguf", 2),
    ("tensor", 3),
    ("config", 4),
    ("batch", 4),
    ("ops", 5),
    ("dist", 6),
    ("weights", 6),
    ("layers", 7),
    ("model", 8),
    ("checkpoint", 9),
    ("load", 10),
    ("runner", 11),
    ("serve", 12),
    ("llm", 13),
    ("eval", 14),
];

/// The crate root's re-exports, by the module that defines them.
const ROOT_ITEMS: &[(&str, &str)] = &[
    ("DType", "dtype"),
    ("Error", "error"),
    ("Result", "error"),
    ("Mapping", "mapping"),
    ("Tensor", "tensor"),
    ("Device", "tensor"),
    ("Generation", "llm"),
    ("Llm", "llm"),
    ("LlmOptions", "load"),
    ("__private", "error"),
];

fn layer(module: &str) -> Option<u32> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|&(_, l)| l)
}

/// The module a `crate::<name>` path lands in.
fn target_module(name: &str) -> String {
    ROOT_ITEMS.iter().find(|(i, _)| *i == name).map_or(name, |&(_, m)| m).to_string()
}

/// One upward (or sideways) import: file, line, the module it uses.
#[derive(Debug, PartialEq)]
struct Violation {
    file: String,
    line: usize,
    used: String,
    why: String,
}

/// The `crate::` targets of each line of `src` (line numbers from 1), test modules excluded.
fn crate_refs(src: &str) -> Vec<(usize, String)> {
    let mut out = vec![];
    let mut group: Option<(usize, String)> = None;
    let mut lines = src.lines().enumerate().peekable();
    while let Some((i, raw)) = lines.next() {
        let line = raw.split("//").next().unwrap_or("");
        if raw.trim() == "#[cfg(test)]"
            && lines.peek().is_some_and(|(_, l)| l.trim_start().starts_with("mod "))
        {
            break;
        }
        // `use crate::{a, b::c, ...};`, possibly over several lines: the idents at depth 1.
        if let Some((start, text)) = group.as_mut() {
            text.push_str(line);
            if line.contains(';') {
                let (start, text) = (*start, std::mem::take(text));
                group = None;
                out.extend(group_heads(&text).into_iter().map(|m| (start, m)));
            }
            continue;
        }
        if let Some(pos) = line.find("crate::{") {
            let text = line[pos + "crate::".len()..].to_string();
            if text.contains(';') {
                out.extend(group_heads(&text).into_iter().map(|m| (i + 1, m)));
            } else {
                group = Some((i + 1, text));
            }
        }
        let mut rest = line;
        while let Some(pos) = rest.find("crate::") {
            let before = rest[..pos].chars().last();
            rest = &rest[pos + "crate::".len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue; // `trtllm_core::`, `my_crate::`
            }
            let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if !name.is_empty() {
                out.push((i + 1, name));
            }
        }
    }
    out
}

/// The first segment of every path in a `{...}` use group.
fn group_heads(text: &str) -> Vec<String> {
    let mut heads = vec![];
    let (mut depth, mut at_start, mut cur) = (0usize, false, String::new());
    for c in text.chars() {
        match c {
            '{' => {
                depth += 1;
                at_start = depth == 1;
                cur.clear();
            }
            '}' => {
                if depth == 1 && !cur.is_empty() {
                    heads.push(std::mem::take(&mut cur));
                }
                depth = depth.saturating_sub(1);
                at_start = false;
            }
            ',' if depth == 1 => {
                if !cur.is_empty() {
                    heads.push(std::mem::take(&mut cur));
                }
                at_start = true;
            }
            c if depth == 1 && at_start && (c.is_alphanumeric() || c == '_') => cur.push(c),
            c if depth == 1 && at_start && !c.is_whitespace() => {
                if !cur.is_empty() {
                    heads.push(std::mem::take(&mut cur));
                }
                at_start = false;
            }
            c if c.is_whitespace() && depth == 1 && !cur.is_empty() => {
                heads.push(std::mem::take(&mut cur));
                at_start = false;
            }
            _ => {}
        }
    }
    heads
}

/// The violations of one file, whose path is relative to `src/` (`ops/norm.rs`).
fn check_file(rel: &str, src: &str) -> Vec<Violation> {
    let own = rel.split('/').next().unwrap_or(rel).trim_end_matches(".rs");
    if own == "lib" {
        return vec![];
    }
    let file_name = rel.rsplit('/').next().unwrap_or(rel);
    if file_name.starts_with("tests_") {
        return vec![];
    }
    let Some(own_layer) = layer(own) else {
        return vec![Violation {
            file: rel.into(),
            line: 0,
            used: own.into(),
            why: format!(
                "module `{own}` is not in the layer table (tests/tests/layering.rs, ARCHITECTURE.md)"
            ),
        }];
    };
    let mut out = vec![];
    for (line, name) in crate_refs(src) {
        let used = target_module(&name);
        if used == own || name == "self" {
            continue;
        }
        let why = match layer(&used) {
            None => format!("`crate::{name}` is not a module of the layer table"),
            Some(l) if l < own_layer || (l == 0 && own_layer == 0) => continue,
            Some(l) if l == own_layer => {
                format!("`{own}` and `{used}` share layer {l}: siblings must not import each other")
            }
            Some(l) => format!("`{own}` (layer {own_layer}) imports `{used}` (layer {l}): an upward edge"),
        };
        out.push(Violation { file: rel.into(), line, used, why });
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn trtllm_core_imports_only_downward() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../trtllm-core/src");
    let mut files = vec![];
    rust_files(&root, &mut files);
    files.sort();
    assert!(files.len() > 50, "found only {} files under {}", files.len(), root.display());
    let mut bad = vec![];
    let mut cross = 0;
    for f in &files {
        let rel = f.strip_prefix(&root).expect("under src").to_string_lossy().replace('\\', "/");
        let src = std::fs::read_to_string(f).expect("read source");
        let own = rel.split('/').next().unwrap_or("").trim_end_matches(".rs").to_string();
        cross += crate_refs(&src).iter().filter(|(_, n)| target_module(n) != own).count();
        bad.extend(check_file(&rel, &src));
    }
    let report: Vec<String> = bad.iter().map(|v| format!("{}:{}: {}", v.file, v.line, v.why)).collect();
    assert!(report.is_empty(), "imports against the layer table:\n{}", report.join("\n"));
    println!("{} files, {cross} cross-module references, 0 upward", files.len());
}

#[test]
fn a_planted_back_edge_is_reported_with_file_and_line() {
    let src = "//! An op.\n\nuse crate::tensor::Tensor;\nuse crate::{ops, serve::Scheduler};\n\nfn f() {\n    crate::runner::thing();\n}\n";
    let v = check_file("ops/planted.rs", src);
    let got: Vec<(usize, &str)> = v.iter().map(|v| (v.line, v.used.as_str())).collect();
    assert_eq!(got, vec![(4, "serve"), (7, "runner")], "{v:?}");
    assert!(v[0].why.contains("upward"), "{}", v[0].why);
    // Siblings of one layer, and a module missing from the table.
    assert_eq!(check_file("dist/x.rs", "use crate::weights::WeightSpec;\n").len(), 1);
    assert_eq!(check_file("newthing/x.rs", "use crate::Tensor;\n").len(), 1);
    // Test modules at the end of a file may use anything.
    let with_tests = "use crate::Tensor;\n#[cfg(test)]\nmod tests {\n    use crate::serve::Scheduler;\n}\n";
    assert!(check_file("ops/y.rs", with_tests).is_empty());
    // Multi-line groups.
    let multi = "use crate::{\n    batch::ForwardBatch,\n    llm::Llm,\n};\n";
    let v = check_file("ops/z.rs", multi);
    assert_eq!(v.iter().map(|v| (v.line, v.used.as_str())).collect::<Vec<_>>(), vec![(1, "llm")]);
}

/// Every `TRTLLM_*` variable the engine's code names is in the knob table (`env.rs`, the only
/// place that reads them), and README's "Knobs" lists every entry of the table.
#[test]
fn every_knob_is_read_in_env_rs_and_documented() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let table: Vec<&str> = trtllm_core::env::KNOBS.iter().map(|(n, _)| *n).collect();
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    for n in &table {
        assert!(readme.contains(&format!("| `{n}` |")), "README.md's Knobs table misses {n}");
    }
    let mut files = vec![];
    for dir in ["trtllm-core/src", "kernels/src", "src", "server/src"] {
        rust_files(&root.join(dir), &mut files);
    }
    let mut stray = vec![];
    for f in files.iter().filter(|f| !f.ends_with("trtllm-core/src/env.rs")) {
        let src = std::fs::read_to_string(f).expect("source");
        for (i, line) in src.lines().enumerate() {
            if line.contains("std::env::var")
                && line.contains("\"TRTLLM_")
                && !line.contains("TRTLLM_API_KEY")
            {
                stray.push(format!("{}:{}: {}", f.display(), i + 1, line.trim()));
            }
        }
    }
    assert!(stray.is_empty(), "TRTLLM_* read outside trtllm-core/src/env.rs:\n{}", stray.join("\n"));
}
