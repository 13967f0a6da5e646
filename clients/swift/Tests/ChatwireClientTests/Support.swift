// Paths the tests share: the repository root (from this file's path, or CHATWIRE_REPO_ROOT)
// and the conformance binary (CHATWIRE_CONFORMANCE, or target/debug under the root).

import Foundation

enum TestPaths {
    /// The repository root: five path components above this file
    /// (clients/swift/Tests/ChatwireClientTests/Support.swift).
    static var repositoryRoot: URL {
        if let root = ProcessInfo.processInfo.environment["CHATWIRE_REPO_ROOT"] {
            return URL(fileURLWithPath: root)
        }
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<5 {
            url = url.deletingLastPathComponent()
        }
        return url
    }

    /// conformance/vectors.
    static var vectors: URL {
        repositoryRoot.appendingPathComponent("conformance/vectors")
    }

    /// The `chatwire-conformance` binary that plays the client-harness scenarios.
    static var conformanceBinary: URL {
        if let path = ProcessInfo.processInfo.environment["CHATWIRE_CONFORMANCE"] {
            return URL(fileURLWithPath: path)
        }
        let target = ProcessInfo.processInfo.environment["CARGO_TARGET_DIR"]
            .map { URL(fileURLWithPath: $0) }
            ?? repositoryRoot.appendingPathComponent("target")
        return target.appendingPathComponent("debug/chatwire-conformance")
    }
}
