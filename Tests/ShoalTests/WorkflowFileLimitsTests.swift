import Foundation
import ShoalTestSupport
import Testing

@testable import Shoal

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Bad input is refused before the run, in plain words (issue 8, class 5): data files that are
/// not regular files, YAML alias bombs, counts and names beyond what works where they are used.
/// Each error names the file, line and field, as every workflow-file error does.
@Suite("WorkflowFile limits: files, aliases, counts and names")
struct WorkflowFileLimitsTests {
    /// A temporary folder holding `wf.yaml` and whatever `prepare` puts next to it.
    private func load(
        _ yaml: String, options: WorkflowFile.ParseOptions = .init(), prepare: (URL) throws -> Void = { _ in }
    ) throws -> Result<WorkflowFile, WorkflowFileError> {
        let dir = makeTempDirectory("limits")
        try prepare(dir)
        let path = dir.appendingPathComponent("wf.yaml").path
        try yaml.write(toFile: path, atomically: true, encoding: .utf8)
        do {
            return .success(try WorkflowFile.load(path: path, options: options))
        } catch {
            return .failure(error)
        }
    }

    /// The error loading `yaml` throws, checked for kind, `wf.yaml:line:`, field and text.
    private func expectError(
        _ yaml: String, _ kind: WorkflowFileError.Kind, line: Int, field: String?, contains: [String] = [],
        options: WorkflowFile.ParseOptions = .init(), prepare: (URL) throws -> Void = { _ in },
        sourceLocation: Testing.SourceLocation = #_sourceLocation
    ) throws {
        guard case .failure(let e) = try load(yaml, options: options, prepare: prepare) else {
            Issue.record("expected a \(kind) error", sourceLocation: sourceLocation)
            return
        }
        #expect(e.kind == kind, "\(e)", sourceLocation: sourceLocation)
        #expect(e.description.contains("wf.yaml:\(line):"), "\(e)", sourceLocation: sourceLocation)
        #expect(e.field == field, "\(e)", sourceLocation: sourceLocation)
        if let field { #expect(e.description.hasSuffix("in field '\(field)'"), "\(e)", sourceLocation: sourceLocation) }
        for text in contains { #expect(e.description.contains(text), "\(e)", sourceLocation: sourceLocation) }
    }

    private func expectLoads(
        _ yaml: String, options: WorkflowFile.ParseOptions = .init(), prepare: (URL) throws -> Void = { _ in },
        sourceLocation: Testing.SourceLocation = #_sourceLocation
    ) throws -> WorkflowFile? {
        switch try load(yaml, options: options, prepare: prepare) {
        case .success(let wf): return wf
        case .failure(let e):
            Issue.record("unexpected error: \(e)", sourceLocation: sourceLocation)
            return nil
        }
    }

    private static func makeFIFO(_ url: URL) throws {
        guard mkfifo(url.path, 0o644) == 0 else { throw CocoaError(.fileWriteUnknown) }
    }

    // MARK: Data files must be regular files

    private func dataYAML(_ file: String) -> String {
        "name: w\ndata:\n  corpus: { file: \(file) }\ntasks:\n  - name: a\n    exec: \"cat {in:corpus} > {out:x}\"\n"
    }

    @Test(.timeLimit(.minutes(1))) func aFIFOIsRefusedWithoutWaitingForAWriter() throws {
        try expectError(
            dataYAML("pipe"), .badDataFile, line: 3, field: "data.corpus.file",
            contains: ["data file 'pipe' is a FIFO (named pipe), not a regular file"],
            prepare: { try Self.makeFIFO($0.appendingPathComponent("pipe")) })
    }

    @Test func aDeviceIsRefused() throws {
        try expectError(
            dataYAML("/dev/zero"), .badDataFile, line: 3, field: "data.corpus.file",
            contains: ["data file '/dev/zero' is a character device, not a regular file"])
    }

    @Test func aDirectoryIsNamedAsADirectory() throws {
        try expectError(
            dataYAML("sub"), .badDataFile, line: 3, field: "data.corpus.file",
            contains: ["data file 'sub' is a directory, not a regular file"],
            prepare: { try FileManager.default.createDirectory(at: $0.appendingPathComponent("sub"), withIntermediateDirectories: false) })
    }

    @Test(.timeLimit(.minutes(1))) func symbolicLinksAreFollowed() throws {
        let fm = FileManager.default
        try expectError(
            dataYAML("to-pipe"), .badDataFile, line: 3, field: "data.corpus.file",
            contains: ["is a symbolic link to a FIFO (named pipe), not a regular file"],
            prepare: { dir in
                try Self.makeFIFO(dir.appendingPathComponent("pipe"))
                try fm.createSymbolicLink(atPath: dir.appendingPathComponent("to-pipe").path, withDestinationPath: "pipe")
            })
        try expectError(
            dataYAML("to-dir"), .badDataFile, line: 3, field: "data.corpus.file",
            contains: ["is a symbolic link to a directory"],
            prepare: { try fm.createSymbolicLink(atPath: $0.appendingPathComponent("to-dir").path, withDestinationPath: "/tmp") })
        try expectError(
            dataYAML("dangling"), .missingDataFile, line: 3, field: "data.corpus.file",
            contains: ["is a symbolic link to a file that does not exist"],
            prepare: { try fm.createSymbolicLink(atPath: $0.appendingPathComponent("dangling").path, withDestinationPath: "nowhere") })
        // A link to a regular file is fine, and the datum names the file itself: the run copies
        // it, and a copy of a link would be a link (relative, so dangling in the run's folder).
        var target = ""
        let wf = try expectLoads(dataYAML("link.txt"), prepare: { dir in
            target = dir.appendingPathComponent("real.txt").path
            try "words\n".write(toFile: target, atomically: true, encoding: .utf8)
            try fm.createSymbolicLink(atPath: dir.appendingPathComponent("link.txt").path, withDestinationPath: "real.txt")
        })
        guard case .file(let path) = wf?.data.first?.value else {
            Issue.record("corpus is not a file")
            return
        }
        #expect(path == DataFileCheck.realPath(target))
        #expect(path.hasSuffix("/real.txt"))
    }

    @Test func aPathWithNULIsRefused() throws {
        try expectError(
            dataYAML("\"words.txt\\0.gz\""), .badDataFile, line: 3, field: "data.corpus.file", contains: ["contains a NUL character"],
            prepare: { try "x".write(to: $0.appendingPathComponent("words.txt"), atomically: true, encoding: .utf8) })
    }

    @Test func unreadableFilesAreRefused() throws {
        guard geteuid() != 0 else { return }  // root reads anything
        try expectError(
            dataYAML("secret"), .badDataFile, line: 3, field: "data.corpus.file", contains: ["cannot be read: Permission denied"],
            prepare: { dir in
                let p = dir.appendingPathComponent("secret").path
                _ = FileManager.default.createFile(atPath: p, contents: Data("x".utf8), attributes: [.posixPermissions: 0o000])
            })
    }

    @Test(.timeLimit(.minutes(1))) func theWorkflowFileItselfMustBeARegularFileOfBoundedSize() throws {
        let dir = makeTempDirectory("limits")
        let fifo = dir.appendingPathComponent("wf.yaml")
        try Self.makeFIFO(fifo)
        do {
            _ = try WorkflowFile.load(path: fifo.path)
            Issue.record("a FIFO loaded")
        } catch {
            #expect(error.kind == .unreadable)
            #expect(error.description.contains("cannot read the workflow file: it is a FIFO (named pipe), not a regular file"), "\(error)")
        }
        do {
            _ = try WorkflowFile.load(path: dir.path)
            Issue.record("a directory loaded")
        } catch {
            #expect(error.description.contains("it is a directory, not a regular file"), "\(error)")
        }
        let big = dir.appendingPathComponent("big.yaml")
        try ("name: w\ntasks: []\n# " + String(repeating: "x", count: 2000) + "\n").write(to: big, atomically: true, encoding: .utf8)
        do {
            _ = try WorkflowFile.load(path: big.path, options: .init(maxFileBytes: 1000))
            Issue.record("a file over maxFileBytes loaded")
        } catch {
            #expect(error.kind == .tooLarge)
            #expect(error.description.contains("larger than 1000 bytes (maxFileBytes)"), "\(error)")
        }
        #expect(WorkflowFile.ParseOptions().maxFileBytes == 64 << 20)
    }

    /// `validate` checks the data files again: a `WorkflowFile` can be built in code, and a file
    /// can change between a load and a run.
    @Test(.timeLimit(.minutes(1))) func validateChecksDataFilesNamesAndRetriesAgain() throws {
        let dir = makeTempDirectory("limits")
        let pipe = dir.appendingPathComponent("pipe")
        try Self.makeFIFO(pipe)
        let call = TaskCall(name: "a", location: SourceLocation(line: 4, column: 3), kind: .exec(command: try CommandTemplate(parsing: "cat {in:d}")), accesses: [DataAccess(datum: "d", direction: .in)])
        let datum = WorkflowFile.InitialDatum(name: "d", value: .file(path: pipe.path), location: SourceLocation(line: 2, column: 3))
        let wf = WorkflowFile(name: "w", path: "built", data: [datum], tasks: [call], outputs: [])
        #expect(throws: WorkflowFileError.self) { try wf.validate(knownTasks: []) }
        do {
            try wf.validate(knownTasks: [])
        } catch {
            #expect(error.kind == .badDataFile)
            #expect(error.description == "built:2:3: data file is a FIFO (named pipe), not a regular file (\(pipe.path)) in field 'data.d.file'")
        }
        var retrying = wf
        retrying.data = [WorkflowFile.InitialDatum(name: "d", value: .inline([]), location: datum.location)]
        retrying.tasks[0].retries = 1_000_000
        do {
            try retrying.validate(knownTasks: [])
            Issue.record("retries 1000000 validated")
        } catch {
            #expect(error.kind == .invalidValue && error.field == "retries", "\(error)")
        }
        var named = retrying
        named.tasks[0].retries = 0
        named.name = "a/b"
        do {
            try named.validate(knownTasks: [])
            Issue.record("workflow name a/b validated")
        } catch {
            #expect(error.kind == .invalidName && error.field == "name", "\(error)")
        }
        named.name = "w"
        named.tasks[0].name = ".."
        #expect(throws: WorkflowFileError.self) { try named.validate(knownTasks: []) }
        named.tasks[0].name = "a"
        try named.validate(knownTasks: [])
    }

    // MARK: Aliases and expansion are bounded

    /// `levels` anchors, each a list of ten aliases of the one before: 10^levels leaves.
    private func aliasBomb(levels: Int, indent: String = "      ") -> String {
        var lines = ["\(indent)l0: &l0 [x, x, x, x, x, x, x, x, x, x]"]
        for i in 1...levels {
            lines.append("\(indent)l\(i): &l\(i) [" + Array(repeating: "*l\(i - 1)", count: 10).joined(separator: ", ") + "]")
        }
        return lines.joined(separator: "\n")
    }

    @Test func anAliasBombInArgsIsRefusedAtTheArgsLine() throws {
        // 10^5 leaves: over maxArgumentNodes (100,000) once expanded, from ten lines of text.
        let yaml = "name: w\ntasks:\n  - name: bomb\n    task: k\n    args:\n" + aliasBomb(levels: 5) + "\n"
        try expectError(
            yaml, .tooLarge, line: 5, field: "args",
            contains: ["task 'bomb': 'args' has more than 100000 YAML nodes (maxArgumentNodes) once aliases (*name) are expanded"])
    }

    @Test(.timeLimit(.minutes(1))) func aBillionLaughsIsRefusedQuickly() throws {
        let yaml = "name: w\ntasks:\n  - name: bomb\n    task: k\n    args:\n" + aliasBomb(levels: 9) + "\n"
        let start = ContinuousClock.now
        try expectError(yaml, .tooLarge, line: 5, field: "args", contains: ["maxArgumentNodes"])
        #expect(ContinuousClock.now - start < .seconds(10))
    }

    @Test func argsBytesAndDepthAreBounded() throws {
        // 2,000 aliases of a 1,000-byte string: 2 MB of JSON from 10 KB of text.
        let word = String(repeating: "w", count: 1000)
        let yaml = "name: w\ntasks:\n  - name: big\n    task: k\n    args: [&s \"\(word)\", "
            + Array(repeating: "*s", count: 2000).joined(separator: ", ") + "]\n"
        try expectError(yaml, .tooLarge, line: 5, field: "args", contains: ["more than 1048576 bytes as JSON (maxArgumentBytes)"])

        let deep = "name: w\ntasks:\n  - name: deep\n    task: k\n    args: " + String(repeating: "[", count: 101) + String(repeating: "]", count: 101) + "\n"
        try expectError(deep, .tooLarge, line: 5, field: "args", contains: ["more than 100 levels deep (maxArgumentDepth)"])
        let fine = "name: w\ntasks:\n  - name: deep\n    task: k\n    args: " + String(repeating: "[", count: 100) + String(repeating: "]", count: 100) + "\n"
        _ = try expectLoads(fine)
    }

    @Test func argsWithinTheLimitsStillUseAliases() throws {
        let wf = try expectLoads("""
            name: w
            tasks:
              - name: a
                task: k
                args: { sizes: &sizes [1, 2, 3], again: *sizes }
            """)
        guard case .registered(_, let json)? = wf?.tasks.first?.kind else { return }
        #expect(String(decoding: json, as: UTF8.self) == #"{"sizes":[1,2,3],"again":[1,2,3]}"#)
    }

    @Test func foreachTimesSizeIsBoundedByMaxExpandedBytes() throws {
        // Each call is small, but 1,000 of them pass a 100 KB budget.
        let yaml = """
            name: w
            tasks:
              - name: t-{i}
                foreach: { i: "0..<1000" }
                task: k
                args: { text: "\(String(repeating: "y", count: 200))" }
            """
        try expectError(
            yaml, .tooLarge, line: 3, field: "foreach", contains: ["maxExpandedBytes"],
            options: .init(maxExpandedBytes: 100_000))
        _ = try expectLoads(yaml, options: .init(maxExpandedBytes: 1_000_000))
        // Inline data repeated by aliases counts too.
        let data = "name: w\ndata:\n  a: &big \"\(String(repeating: "z", count: 1000))\"\n"
            + (1...200).map { "  d\($0): *big" }.joined(separator: "\n") + "\ntasks: []\n"
        try expectError(data, .tooLarge, line: 102, field: "data.d99", contains: ["maxExpandedBytes"], options: .init(maxExpandedBytes: 100_000))
        #expect(WorkflowFile.ParseOptions().maxExpandedBytes == 256 << 20)
    }

    @Test func longCommandsAreRefusedBeforeTheyAreBuilt() throws {
        let long = "name: w\ntasks:\n  - name: a\n    exec: \"echo \(String(repeating: "x", count: 70_000))\"\n"
        try expectError(long, .tooLarge, line: 4, field: "exec", contains: ["longer than 65536 bytes (maxCommandBytes)"])
        // A short template with many {v} and a long value: refused while substituting.
        let value = String(repeating: "v", count: 10_000)
        let many = "name: w\ntasks:\n  - name: a-{i}\n    foreach: { i: [\"\(value)\"] }\n    exec: \"" + String(repeating: "{i}", count: 10_000) + "\"\n"
        let start = ContinuousClock.now
        try expectError(many, .invalidName, line: 3, field: "name", contains: ["expands to more than 200 bytes"])
        let manyNamed = many.replacingOccurrences(of: "name: a-{i}", with: "name: a")
        try expectError(manyNamed, .tooLarge, line: 5, field: "exec", contains: ["maxCommandBytes"])
        #expect(ContinuousClock.now - start < .seconds(10))
    }

    // MARK: Counts and ranges

    @Test func retriesAreCapped() throws {
        try expectError(
            "name: w\ntasks:\n  - name: a\n    exec: \"true\"\n    retries: 1000000\n", .invalidValue, line: 5,
            field: "retries", contains: ["'retries' is 1000000; at most 100 retries are allowed"])
        try expectError("name: w\ntasks:\n  - name: a\n    exec: \"true\"\n    retries: 101\n", .invalidValue, line: 5, field: "retries")
        let wf = try expectLoads("name: w\ntasks:\n  - name: a\n    exec: \"true\"\n    retries: 100\n")
        #expect(wf?.tasks.first?.retries == 100)
        #expect(WorkflowFile.maxRetries <= Int(UInt16.max))
    }

    // MARK: Names

    @Test func theWorkflowNameFitsTheRunRecordKey() throws {
        // RunRecords keys a run `<name>/<ISO 8601 with ms>-<pid>-<run>`: at most 56 bytes after the name.
        let suffix = "/" + "2024-12-31T23:59:59.999Z" + "-" + String(Int32.max) + "-" + String(Int.max)
        #expect(suffix.utf8.count == 56)
        let longest = String(repeating: "é", count: WorkflowFile.maxWorkflowNameBytes / 2) + "x"  // 2-byte characters
        #expect(longest.utf8.count == WorkflowFile.maxWorkflowNameBytes)
        try ShardRecord.validate(key: Array((longest + suffix).utf8))

        let wf = try expectLoads("name: \(longest)\ntasks: []\n")
        #expect(wf?.name == longest)
        try expectError(
            "name: \(longest)y\ntasks: []\n", .invalidName, line: 1, field: "name",
            contains: ["the workflow name is 256 bytes long; it is at most 255 bytes", "a store key is at most 511 bytes"])
        try expectError("name: a/b\ntasks: []\n", .invalidName, line: 1, field: "name", contains: ["contains '/'"])
        try expectError("name: \"a\\nb\"\ntasks: []\n", .invalidName, line: 1, field: "name", contains: ["control character"])
        try expectError("name: \"\"\ntasks: []\n", .invalidName, line: 1, field: "name", contains: ["the workflow name is empty"])
        _ = try expectLoads("name: My workflow (v2)\ntasks: []\n")
    }

    @Test func datumAndTaskNamesAreBoundedFileNames() throws {
        let ok = String(repeating: "n", count: 200)
        let long = ok + "n"
        let bytes = "is 201 bytes long; names are at most 200 bytes, as they become file names"
        try expectError("name: w\ndata:\n  \(long): x\ntasks: []\n", .invalidName, line: 3, field: "data", contains: [bytes])
        try expectError("name: w\ntasks:\n  - name: \(long)\n    exec: \"true\"\n", .invalidName, line: 3, field: "name", contains: [bytes])
        try expectError("name: w\ntasks:\n  - name: a\n    exec: \"echo > {out:\(long)}\"\n", .placeholderSyntax, line: 4, field: "exec", contains: [bytes])
        try expectError("name: w\ntasks:\n  - name: a\n    task: k\n    out: [\(long)]\n", .invalidName, line: 5, field: "out", contains: [bytes])
        try expectError(
            "name: w\ntasks:\n  - name: a-{v}\n    foreach: { v: [\(ok)] }\n    exec: \"true\"\n", .invalidName, line: 3, field: "name",
            contains: ["expands to more than 200 bytes"])
        try expectError(
            "name: w\ntasks:\n  - name: a\n    foreach: { v: [\(ok)] }\n    task: k\n    in: [\"x{v}\"]\n", .invalidName, line: 6, field: "in",
            contains: ["expands to more than 200 bytes"])
        let wf = try expectLoads("name: w\ndata:\n  \(ok): x\ntasks:\n  - name: \(ok)\n    exec: \"cat {in:\(ok)} > {out:o}\"\noutputs: [\(ok)]\n")
        #expect(wf?.tasks.first?.name == ok)
        // The longest file name the runner makes from a name: `<datum>.shared.<counter>`.
        let dir = makeTempDirectory("limits")
        let path = dir.appendingPathComponent(ok + ".shared." + String(UInt64.max)).path
        #expect(FileManager.default.createFile(atPath: path, contents: Data()))
    }

    @Test func foreachVariablesAreAtMost63Characters() throws {
        let v63 = String(repeating: "v", count: 63)
        let wf = try expectLoads("name: w\ntasks:\n  - name: t-{\(v63)}\n    foreach: { \(v63): [a, b] }\n    exec: \"echo {\(v63)}\"\n")
        #expect(wf?.tasks.map(\.name) == ["t-a", "t-b"])
        let v64 = v63 + "v"
        try expectError(
            "name: w\ntasks:\n  - name: t-{\(v64)}\n    foreach: { \(v64): [a, b] }\n    exec: \"echo {\(v64)}\"\n", .invalidName,
            line: 4, field: "foreach", contains: ["is 64 characters long; variables are at most 63"])
    }

    // MARK: The command line

    /// `shoal run` with a FIFO as a data file: exit 2 with the file:line:field error, at once.
    @Test(.timeLimit(.minutes(2))) func shoalRunRefusesAFIFOWithExitCode2() throws {
        let dir = try ScratchDirectory("limits-cli")
        defer { dir.remove() }
        try Self.makeFIFO(dir.appending("pipe"))
        let path = dir.appending("wf.yaml").path
        try dataYAML("pipe").write(toFile: path, atomically: true, encoding: .utf8)
        let r = try ChildProcess.shoal(["run", path, "--output-dir", dir.appending("out").path], timeoutSeconds: 30)
        #expect(r.status == 2, "stderr: \(r.stderr)")
        #expect(r.stderr.hasPrefix("error: \(path):3:"), "stderr: \(r.stderr)")
        #expect(r.stderr.contains("data file 'pipe' is a FIFO (named pipe), not a regular file"), "stderr: \(r.stderr)")
        #expect(r.stderr.contains("in field 'data.corpus.file'"), "stderr: \(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir.appending("out").path))
    }
}
