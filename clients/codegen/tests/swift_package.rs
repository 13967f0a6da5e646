//! Checks of the Swift SDK (`clients/swift`) that run without a Swift toolchain: every `.swift`
//! file of the package (generated and hand-written, tests included) parses with tree-sitter-swift
//! without an error or missing node; `ChatwireClient` has exactly one `async throws` method per
//! rpc of `ChatwireService` (taken from the walker's model of the descriptors), with the
//! generated request and result types; and every type name the package uses (in a type
//! position, or as an upper-case name in an expression: `FrameCodec.encode`, `Data(bytes)`) is
//! declared in the package or is a Swift standard library / Foundation / Network / XCTest name
//! of the list kept below. Syntax and names only: types, overloads and members are not checked
//! (no compiler).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use chatwire_codegen::backend::swift::type_name;
use chatwire_codegen::names::lower_camel;
use tree_sitter::{Node, Parser, Tree};

fn package_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../swift")
}

fn swift_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with('.') {
            continue; // .build, .swiftpm
        }
        if path.is_dir() {
            swift_files(&path, out);
        } else if name.ends_with(".swift") {
            out.push(path);
        }
    }
}

struct Parsed {
    path: PathBuf,
    source: String,
    tree: Tree,
}

fn parse_package() -> Vec<Parsed> {
    let mut files = Vec::new();
    swift_files(&package_dir(), &mut files);
    assert!(
        files.len() >= 10,
        "expected the package's Swift files, found {files:?}"
    );
    files.into_iter().map(|path| parse_file(&path)).collect()
}

fn parse_file(path: &Path) -> Parsed {
    let source = std::fs::read_to_string(path).expect("read swift file");
    let mut parser = Parser::new();
    parser
        .set_language(&tree_sitter_swift::LANGUAGE.into())
        .expect("swift grammar");
    let tree = parser.parse(&source, None).expect("parse");
    Parsed {
        path: path.to_owned(),
        source,
        tree,
    }
}

/// Every node of the tree, depth first.
fn walk<'t>(node: Node<'t>, out: &mut Vec<Node<'t>>) {
    out.push(node);
    let mut cursor = node.walk();
    for child in node.children(&mut cursor) {
        walk(child, out);
    }
}

fn nodes(tree: &Tree) -> Vec<Node<'_>> {
    let mut out = Vec::new();
    walk(tree.root_node(), &mut out);
    out
}

fn text<'s>(node: Node<'_>, source: &'s str) -> &'s str {
    node.utf8_text(source.as_bytes()).unwrap_or("")
}

/// The syntax problems of one file: `line:column kind` for each ERROR or MISSING node.
fn syntax_errors(file: &Parsed) -> Vec<String> {
    nodes(&file.tree)
        .into_iter()
        .filter(|n| n.is_error() || n.is_missing())
        .map(|n| {
            let at = n.start_position();
            let what = if n.is_missing() {
                format!("MISSING {}", n.kind())
            } else {
                "ERROR".to_owned()
            };
            format!("{}:{}: {what}", at.row + 1, at.column + 1)
        })
        .collect()
}

#[test]
fn every_swift_file_of_the_package_parses() {
    let mut failures = Vec::new();
    for file in parse_package() {
        let errors = syntax_errors(&file);
        if !errors.is_empty() || file.tree.root_node().has_error() {
            failures.push(format!("{}: {errors:?}", file.path.display()));
        }
    }
    assert!(failures.is_empty(), "Swift syntax errors:\n{failures:#?}");
}

#[test]
fn a_broken_swift_file_is_reported() {
    // The check above must be able to fail: a file with one brace removed.
    let client = package_dir().join("Sources/ChatwireClient/Runtime/Client.swift");
    let source = std::fs::read_to_string(&client).expect("Client.swift");
    let at = source.rfind('}').expect("a closing brace");
    let broken = format!("{}{}", &source[..at], &source[at + 1..]);
    let tmp = std::env::temp_dir().join(format!("chatwire-swift-{}.swift", std::process::id()));
    std::fs::write(&tmp, broken).expect("write");
    let parsed = parse_file(&tmp);
    let _ = std::fs::remove_file(&tmp);
    assert!(
        !syntax_errors(&parsed).is_empty(),
        "a missing brace went unnoticed"
    );
}

/// One function declaration: its name, whether it is `async` and `throws`, its first
/// parameter's type and its return type.
#[derive(Debug)]
struct Function {
    name: String,
    is_async: bool,
    throws: bool,
    is_public: bool,
    first_param: Option<String>,
    returns: Option<String>,
    file: String,
}

/// The token (`actor`, `class`, `struct`, `enum`, `extension`) of a `class_declaration`.
fn declaration_kind(node: Node<'_>) -> String {
    let mut cursor = node.walk();
    node.children(&mut cursor)
        .find(|c| {
            matches!(
                c.kind(),
                "actor" | "class" | "struct" | "enum" | "extension"
            )
        })
        .map(|c| c.kind().to_owned())
        .unwrap_or_default()
}

fn function(node: Node<'_>, file: &Parsed) -> Function {
    let mut f = Function {
        name: node
            .child_by_field_name("name")
            .map(|n| text(n, &file.source).to_owned())
            .unwrap_or_default(),
        is_async: false,
        throws: false,
        is_public: false,
        first_param: None,
        returns: None,
        file: file.path.display().to_string(),
    };
    let mut after_arrow = false;
    let mut cursor = node.walk();
    for child in node.children(&mut cursor) {
        match child.kind() {
            "async" => f.is_async = true,
            "modifiers" => f.is_public = text(child, &file.source).contains("public"),
            "throws" => f.throws = true,
            "->" => after_arrow = true,
            "parameter" if f.first_param.is_none() => {
                let mut c = child.walk();
                f.first_param = child
                    .named_children(&mut c)
                    .filter(|n| n.kind().ends_with("_type"))
                    .last()
                    .map(|n| text(n, &file.source).to_owned());
            }
            "function_body" => break,
            _ if after_arrow && child.is_named() && f.returns.is_none() => {
                f.returns = Some(text(child, &file.source).to_owned());
            }
            _ => {}
        }
    }
    f
}

/// Every function declared directly in `ChatwireClient` (the actor and its extensions).
fn client_functions(files: &[Parsed]) -> (usize, Vec<Function>) {
    let mut actors = 0;
    let mut out = Vec::new();
    for file in files {
        for node in nodes(&file.tree) {
            if node.kind() != "class_declaration" {
                continue;
            }
            let Some(name) = node.child_by_field_name("name") else {
                continue;
            };
            if text(name, &file.source) != "ChatwireClient" {
                continue;
            }
            let kind = declaration_kind(node);
            if kind == "actor" {
                actors += 1;
            } else if kind != "extension" {
                continue;
            }
            let Some(body) = node.child_by_field_name("body") else {
                continue;
            };
            let mut cursor = body.walk();
            for member in body.named_children(&mut cursor) {
                if member.kind() == "function_declaration" {
                    out.push(function(member, file));
                }
            }
        }
    }
    (actors, out)
}

#[test]
fn chatwire_client_has_one_async_throws_method_per_rpc() {
    let protocol = chatwire_codegen::chatwire_v1().expect("chatwire.v1 walks");
    let files = parse_package();
    let (actors, functions) = client_functions(&files);
    assert_eq!(actors, 1, "exactly one `actor ChatwireClient`");
    let mut problems = Vec::new();
    for r in &protocol.requests {
        let name = lower_camel(&r.rpc);
        let matching: Vec<&Function> = functions
            .iter()
            .filter(|f| f.name == name && f.is_async && f.throws)
            .collect();
        let [method] = matching.as_slice() else {
            problems.push(format!(
                "rpc {}: {} async throws methods named {name}",
                r.rpc,
                matching.len()
            ));
            continue;
        };
        let request = type_name(&r.request);
        let response = type_name(&r.response);
        if method.first_param.as_deref() != Some(request.as_str()) {
            problems.push(format!(
                "{name}: first parameter {:?}, expected {request}",
                method.first_param
            ));
        }
        if method.returns.as_deref() != Some(response.as_str()) {
            problems.push(format!(
                "{name}: returns {:?}, expected {response}",
                method.returns
            ));
        }
    }
    // No other public async method of the client may take a request of the service.
    let requests: BTreeSet<String> = protocol
        .requests
        .iter()
        .map(|r| type_name(&r.request))
        .collect();
    let rpc_names: BTreeSet<String> = protocol
        .requests
        .iter()
        .map(|r| lower_camel(&r.rpc))
        .collect();
    for f in &functions {
        if f.is_async
            && f.is_public
            && !rpc_names.contains(&f.name)
            && f.first_param.as_ref().is_some_and(|p| requests.contains(p))
        {
            problems.push(format!(
                "{} ({}) takes a request but is no rpc",
                f.name, f.file
            ));
        }
    }
    assert!(
        protocol.requests.len() > 30,
        "the walker found the service's rpcs"
    );
    assert!(problems.is_empty(), "{problems:#?}");
}

/// Types of the Swift standard library, Foundation, Network, Dispatch and XCTest that the
/// package names. Adding a name here is a claim that the platform declares it.
const PLATFORM_TYPES: &[&str] = &[
    // modules used as qualifiers
    "Swift",
    "Foundation",
    "Network",
    // Swift standard library
    "Any",
    "AnyObject",
    "Array",
    "ArraySlice",
    "AsyncStream",
    "AsyncThrowingStream",
    "Bool",
    "CaseIterable",
    "Comparable",
    "CheckedContinuation",
    "Character",
    "Dictionary",
    "Double",
    "Duration",
    "Equatable",
    "Error",
    "Float",
    "Hashable",
    "Int",
    "Int32",
    "Int64",
    "Never",
    "Optional",
    "RawRepresentable",
    "Result",
    "Self",
    "Sendable",
    "Sequence",
    "Set",
    "String",
    "Substring",
    "Task",
    "UInt",
    "UInt16",
    "UInt32",
    "UInt64",
    "UInt8",
    "UnsafeContinuation",
    "Void",
    // Foundation
    "Data",
    "Date",
    "FileManager",
    "JSONSerialization",
    "NSError",
    "NSLock",
    "NSNull",
    "NSNumber",
    "NotificationCenter",
    "ProcessInfo",
    "Process",
    "Pipe",
    "FileHandle",
    "TimeInterval",
    "URL",
    "URLComponents",
    "URLError",
    "URLRequest",
    "URLSession",
    "URLSessionConfiguration",
    "URLSessionDelegate",
    "URLSessionWebSocketDelegate",
    "URLSessionWebSocketTask",
    "URLSessionTask",
    "UUID",
    "NSObject",
    // Dispatch (re-exported by Foundation)
    "DispatchQueue",
    // Network.framework
    "NWConnection",
    "NWConnectionGroup",
    "NWEndpoint",
    "NWError",
    "NWMultiplexGroup",
    "NWParameters",
    "NWProtocolQUIC",
    "NWProtocolTLS",
    "NWProtocolMetadata",
    "NWPathMonitor",
    "NWPath",
    "UTF8",
    // XCTest (the test target): types and assertion functions
    "XCTestCase",
    "XCTestExpectation",
    "XCTAssertEqual",
    "XCTAssertFalse",
    "XCTAssertGreaterThan",
    "XCTAssertThrowsError",
    "XCTAssertTrue",
    "XCTFail",
    "XCTUnwrap",
    // PackageDescription (Package.swift)
    "Package",
];

#[test]
fn every_type_the_package_names_is_declared_or_a_platform_type() {
    let files = parse_package();
    let mut declared: BTreeSet<String> = BTreeSet::new();
    // name -> first place it is used
    let mut used: BTreeMap<String, String> = BTreeMap::new();
    for file in &files {
        for node in nodes(&file.tree) {
            match node.kind() {
                "class_declaration" | "protocol_declaration" | "typealias_declaration" => {
                    if let Some(name) = node.child_by_field_name("name")
                        && name.kind() == "type_identifier"
                    {
                        declared.insert(text(name, &file.source).to_owned());
                    }
                }
                "type_parameter" | "associatedtype_declaration" => {
                    let mut cursor = node.walk();
                    for child in node.named_children(&mut cursor) {
                        if child.kind() == "type_identifier" {
                            declared.insert(text(child, &file.source).to_owned());
                            break;
                        }
                    }
                }
                "simple_identifier"
                    if text(node, &file.source).starts_with(|c: char| c.is_ascii_uppercase())
                        && !node.parent().is_some_and(|p| {
                            // members (`NWEndpoint.Host`: only a compiler knows them), module
                            // names of imports and `#if canImport(...)` / `#if os(...)`
                            matches!(p.kind(), "navigation_suffix" | "directive" | "identifier")
                        }) =>
                {
                    // An upper-case name in an expression (`FrameCodec.encode`, `Data(bytes)`,
                    // `XCTAssertEqual(...)`): a type, or a platform function.
                    let at = node.start_position();
                    used.entry(text(node, &file.source).to_owned())
                        .or_insert_with(|| format!("{}:{}", file.path.display(), at.row + 1));
                }
                "user_type" if node.parent().is_some_and(|p| p.kind() == "attribute") => {
                    // `@available`, `@Sendable`, `@unchecked`: attributes, not types.
                }
                "user_type" => {
                    // `Event.Kind`: the first identifier names the type; the rest are its
                    // members, which only a compiler can check.
                    let mut cursor = node.walk();
                    if let Some(first) = node
                        .named_children(&mut cursor)
                        .find(|c| c.kind() == "type_identifier")
                    {
                        let at = first.start_position();
                        used.entry(text(first, &file.source).to_owned())
                            .or_insert_with(|| format!("{}:{}", file.path.display(), at.row + 1));
                    }
                }
                _ => {}
            }
        }
    }
    let unknown: Vec<String> = used
        .iter()
        .filter(|(name, _)| !declared.contains(*name) && !PLATFORM_TYPES.contains(&name.as_str()))
        // tree-sitter-swift 0.7 reads the `async` of `() async throws -> T` as a type name.
        .filter(|(name, _)| name.as_str() != "async")
        .map(|(name, at)| format!("{name} (first at {at})"))
        .collect();
    assert!(
        unknown.is_empty(),
        "types neither declared in the package nor in the platform list:\n{unknown:#?}"
    );
    for name in [
        "ChatwireClient",
        "ChatwireError",
        "SendRequest",
        "ErrorCode",
        "CloseCode",
    ] {
        assert!(declared.contains(name), "{name} is declared");
    }
}

#[test]
fn the_quick_start_of_the_docs_is_the_compiled_test_file() {
    let docs = std::fs::read_to_string(package_dir().join("../../docs/sdk-swift.md"))
        .expect("docs/sdk-swift.md");
    let start = docs.find("```swift\n").expect("a swift block") + "```swift\n".len();
    let end = start + docs[start..].find("```\n").expect("its end");
    let snippet = &docs[start..end];
    let file =
        std::fs::read_to_string(package_dir().join("Tests/ChatwireClientTests/QuickStart.swift"))
            .expect("QuickStart.swift");
    let body: String = file
        .lines()
        .skip(2) // the file's own header
        .map(|l| format!("{l}\n"))
        .collect::<String>()
        .replace(
            "import Foundation\n@testable import ChatwireClient\n",
            "import ChatwireClient\n",
        );
    assert_eq!(
        body, snippet,
        "QuickStart.swift differs from the docs' quick start"
    );
}
