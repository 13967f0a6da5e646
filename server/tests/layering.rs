//! Imports run one way (docs/architecture.md, "Module map"):
//!
//! ```text
//!  chat (ids, commands, errors, validation) ◀── backend (stores, fan-out, events, pipelines)
//!        ◀── writer (the room writer) ◀── session, http, server, distributed, webhook
//! ```
//!
//! `chat` imports nothing from the layers above it, and `backend` nothing from `writer` or
//! above (the pipelines drive the writer through `backend::pipeline::RoomExecutor`). This test
//! reads every source file of `server/src/chat/` and `server/src/backend/`, resolves each
//! `crate::…` and `super::…` path to the top-level module it names, and fails naming the file,
//! line and path of each import that runs the wrong way.
//!
//! ```sh
//! cargo test -p chatwire-server --test layering
//! ```

use std::path::{Path, PathBuf};

/// The top-level modules above the backends: neither `chat` nor `backend` may name them.
const ABOVE_BACKEND: &[&str] = &[
    "writer",
    "session",
    "server",
    "http",
    "transport",
    "webhook",
    "search",
    "distributed",
    "backup",
    "cli",
];

/// One rule: the files under `dir` (relative to `server/src`) may not name `forbidden`.
struct Rule {
    dir: &'static str,
    forbidden: Vec<&'static str>,
}

fn rules() -> Vec<Rule> {
    let mut chat = vec!["backend"];
    chat.extend_from_slice(ABOVE_BACKEND);
    vec![
        Rule {
            dir: "chat",
            forbidden: chat,
        },
        Rule {
            dir: "backend",
            forbidden: ABOVE_BACKEND.to_vec(),
        },
    ]
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("read {dir:?}: {e}"));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The module path of a source file relative to `src`: `backend/fanout_redis/mod.rs` is
/// `["backend", "fanout_redis"]`, `backend/fanout_redis/rooms.rs` is
/// `["backend", "fanout_redis", "rooms"]`.
fn module_path(relative: &str) -> Vec<String> {
    let mut parts: Vec<String> = relative
        .trim_end_matches(".rs")
        .split('/')
        .map(str::to_owned)
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// The code of a line without its `//` comment (doc comments included).
fn code_of(line: &str) -> &str {
    match line.find("//") {
        Some(at) => &line[..at],
        None => line,
    }
}

/// The names at the top level of a `{…}` group that starts at `text[0]`, each cut to its first
/// path segment: `{chat::ids, writer::RoomWriter}` gives `chat`, `writer`.
fn group_heads(text: &str) -> Vec<String> {
    let mut heads = Vec::new();
    let mut depth = 0usize;
    let mut current = String::new();
    for ch in text.chars() {
        match ch {
            '{' => {
                depth += 1;
                if depth == 1 {
                    continue;
                }
            }
            '}' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    heads.push(std::mem::take(&mut current));
                    break;
                }
            }
            ',' if depth == 1 => {
                heads.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        if depth >= 1 {
            current.push(ch);
        }
    }
    heads
        .iter()
        .filter_map(|h| {
            let head = h.trim().split("::").next()?.trim();
            (!head.is_empty()).then(|| head.to_owned())
        })
        .collect()
}

fn is_ident_char(ch: char) -> bool {
    ch.is_ascii_alphanumeric() || ch == '_'
}

/// The top-level modules that `code` (a file's code, comments removed) names through
/// `crate::` or through enough `super::` to reach the crate root, with the line of each.
fn top_level_names(module: &[String], code: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (index, line) in code.lines().enumerate() {
        let mut rest = line;
        let mut offset = 0;
        while let Some(at) = find_path_start(rest) {
            let start = offset + at;
            let tail = &line[start..];
            let (depth_left, after) = if let Some(after) = tail.strip_prefix("crate::") {
                (Some(Vec::new()), after)
            } else {
                let mut supers = 0;
                let mut after = tail;
                while let Some(next) = after.strip_prefix("super::") {
                    supers += 1;
                    after = next;
                }
                let here = module.len();
                (
                    here.checked_sub(supers).map(|keep| module[..keep].to_vec()),
                    after,
                )
            };
            if let Some(resolved) = depth_left
                && resolved.is_empty()
            {
                // At the crate root: the next segment (or group) is a top-level module.
                if after.starts_with('{') {
                    // A group spanning lines is read from here to the end of the file.
                    let from = code.lines().skip(index).collect::<Vec<_>>().join("\n");
                    let group_at = start + (tail.len() - after.len());
                    for head in group_heads(&from[group_at..]) {
                        found.push((index + 1, head));
                    }
                } else {
                    let name: String = after.chars().take_while(|c| is_ident_char(*c)).collect();
                    if !name.is_empty() {
                        found.push((index + 1, name));
                    }
                }
            }
            let consumed = at + 1;
            offset += consumed;
            rest = &rest[consumed..];
        }
    }
    found
}

/// Where the next `crate::` or `super::` path starts in `text` (not inside a longer name).
fn find_path_start(text: &str) -> Option<usize> {
    let mut best: Option<usize> = None;
    for needle in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(at) = text[from..].find(needle) {
            let at = from + at;
            let before = text[..at].chars().next_back();
            // `super::super::x` is one path: only its first `super::` starts it.
            let continues = text[..at].ends_with("super::");
            if !before.is_some_and(is_ident_char) && !continues {
                best = Some(best.map_or(at, |b: usize| b.min(at)));
                break;
            }
            from = at + needle.len();
        }
    }
    best
}

/// The violations of `rule` in one file: "path:line: names `module`".
fn violations(rule: &Rule, relative: &str, source: &str) -> Vec<String> {
    let code: String = source.lines().map(code_of).collect::<Vec<_>>().join("\n");
    top_level_names(&module_path(relative), &code)
        .into_iter()
        .filter(|(_, name)| rule.forbidden.contains(&name.as_str()))
        .map(|(line, name)| {
            format!(
                "server/src/{relative}:{line}: `{}` imports `crate::{name}`, which sits above it",
                rule.dir
            )
        })
        .collect()
}

#[test]
fn chat_and_backend_import_nothing_above_them() {
    let src = src_dir();
    let mut problems = Vec::new();
    for rule in rules() {
        let files = rust_files(&src.join(rule.dir));
        assert!(
            files.len() >= 4,
            "found only {} files under server/src/{}: is the path right?",
            files.len(),
            rule.dir
        );
        for file in files {
            let relative = file
                .strip_prefix(&src)
                .expect("under src")
                .to_string_lossy()
                .replace('\\', "/");
            let source = std::fs::read_to_string(&file).expect("read a source file");
            problems.extend(violations(&rule, &relative, &source));
        }
    }
    assert!(
        problems.is_empty(),
        "imports that run the wrong way (see docs/architecture.md, Module map):\n{}",
        problems.join("\n")
    );
}

/// The scanner itself: each form of a wrong-way import is caught, right-way ones are not.
#[test]
fn the_scanner_catches_each_form_of_a_wrong_way_import() {
    let [chat, backend] = <[Rule; 2]>::try_from(rules()).ok().expect("two rules");
    let caught = |rule: &Rule, file: &str, source: &str| violations(rule, file, source).len();

    assert_eq!(
        caught(
            &chat,
            "chat/error.rs",
            "use crate::backend::store::StoreError;\n"
        ),
        1
    );
    assert_eq!(
        caught(
            &chat,
            "chat/ids.rs",
            "fn f(_: crate::writer::RoomWriter) {}\n"
        ),
        1
    );
    assert_eq!(
        caught(
            &chat,
            "chat/ids.rs",
            "use super::super::backend::fanout::Audience;\n"
        ),
        1
    );
    assert_eq!(
        caught(
            &chat,
            "chat/command.rs",
            "use crate::{\n    chat::ids::RoomId,\n    backend::store::Head,\n};\n"
        ),
        1
    );
    assert_eq!(
        caught(
            &backend,
            "backend/pipeline_local.rs",
            "use crate::writer::RoomWriter;\n"
        ),
        1
    );
    assert_eq!(
        caught(
            &backend,
            "backend/pipeline_rabbit/shard.rs",
            "use super::super::super::writer::RoomWriter;\n"
        ),
        1
    );
    assert_eq!(
        caught(
            &backend,
            "backend/pipeline_rabbit/mod.rs",
            "use super::super::writer::RoomWriter;\n"
        ),
        1
    );
    assert_eq!(
        caught(
            &backend,
            "backend/fanout.rs",
            "use crate::session::Session;\n"
        ),
        1
    );

    // The right way round, and mentions in comments, pass.
    assert_eq!(
        caught(&chat, "chat/command.rs", "use super::ids::RoomId;\n"),
        0
    );
    assert_eq!(
        caught(
            &chat,
            "chat/error.rs",
            "//! Unlike crate::backend, this is pure.\n"
        ),
        0
    );
    assert_eq!(
        caught(
            &backend,
            "backend/store.rs",
            "use crate::chat::error::ChatError;\n"
        ),
        0
    );
    assert_eq!(
        caught(
            &backend,
            "backend/pipeline_rabbit/shard.rs",
            "use super::super::pipeline::RoomExecutor;\n"
        ),
        0
    );
    assert_eq!(
        caught(
            &backend,
            "backend/fanout_redis/rooms.rs",
            "let a = my_crate::writer::x; let b = supersuper::writer;\n"
        ),
        0
    );
}
