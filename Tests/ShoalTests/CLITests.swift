import Foundation
import ShoalTestSupport
import Testing

/// The `shoal` command line end to end: the real binary as a child process, always with a
/// deadline (the child is killed if it overruns).
@Suite("shoal CLI: run, graph, demo, simulate")
struct CLITests {
    private static let repository = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    private static let examplePath = repository.appendingPathComponent("Examples/workflows/shout-twice.yaml").path

    /// A file of the repository by its path from the root.
    static func repoFile(_ path: String) throws -> String { repository.appendingPathComponent(path).path }

    /// Writes `yaml` to `<dir>/<name>` and returns its path.
    private func write(_ yaml: String, _ name: String, in dir: ScratchDirectory) throws -> String {
        let path = dir.appending(name).path
        try yaml.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// `shoal run` on a malformed file: exit code 2, one `error: FILE:LINE:COL: …` message.
    private func expectRejected(
        _ yaml: String, line: Int, column: Int, mentions: [String],
        sourceLocation: Testing.SourceLocation = #_sourceLocation
    ) throws {
        let dir = try ScratchDirectory("cli-bad")
        defer { dir.remove() }
        let path = try write(yaml, "bad.yaml", in: dir)
        let r = try ChildProcess.shoal(["run", path, "--output-dir", dir.appending("out").path])
        #expect(r.status == 2, "stderr: \(r.stderr)", sourceLocation: sourceLocation)
        #expect(r.stderr.hasPrefix("error: \(path):\(line):\(column): "), "stderr: \(r.stderr)", sourceLocation: sourceLocation)
        for text in mentions {
            #expect(r.stderr.contains(text), "missing \(text.debugDescription) in stderr: \(r.stderr)", sourceLocation: sourceLocation)
        }
        #expect(!FileManager.default.fileExists(atPath: dir.appending("out").path), sourceLocation: sourceLocation)
    }

    @Test func theHelperKillsAChildAtItsDeadline() throws {
        let start = Date()
        #expect(throws: ChildProcess.TimedOut.self) {
            _ = try ChildProcess.run(URL(fileURLWithPath: "/bin/sleep"), ["30"], timeoutSeconds: 0.3)
        }
        #expect(Date().timeIntervalSince(start) < 5)
    }

    @Test func malformedFileWithAnUndefinedDatumExits2() throws {
        try expectRejected(
            """
            name: bad
            tasks:
              - name: a
                exec: "cat {in:nothing} > {out:x}"
            """, line: 4, column: 11,
            mentions: ["task 'a': undefined datum 'nothing'", "in field 'exec'"])
    }

    @Test func malformedFileWithAnUnknownRegisteredTaskExits2() throws {
        try expectRejected(
            """
            name: bad
            data:
              corpus: "some words"
            tasks:
              - name: count
                task: wordCont
                in: [corpus]
                out: [counts]
            """, line: 5, column: 5,
            mentions: ["task 'count': unknown registered task 'wordCont'", "did you mean 'wordCount'?", "in field 'task'"])
    }

    @Test func malformedYAMLExits2() throws {
        try expectRejected(
            """
            name: bad
            tasks:
              - name: a
                exec: "echo a" junk
              - name: b
                exec: "echo b"
            """, line: 4, column: 20, mentions: ["YAML syntax error"])
    }

    @Test func aFailingCommandExits1WithItsStderr() throws {
        let dir = try ScratchDirectory("cli-fail")
        defer { dir.remove() }
        let path = try write(
            """
            name: failing
            tasks:
              - name: boom
                exec: "echo kaput-on-stderr >&2; exit 7; echo > {out:x}"
            """, "fail.yaml", in: dir)
        let r = try ChildProcess.shoal(["run", path])
        #expect(r.status == 1, "stderr: \(r.stderr)")
        #expect(r.stderr.hasPrefix("error: task 'boom' failed"), "stderr: \(r.stderr)")
        #expect(r.stderr.contains("exit code 7"), "stderr: \(r.stderr)")
        #expect(r.stderr.contains("kaput-on-stderr"), "stderr: \(r.stderr)")
    }

    @Test func aCommandOverTheTimeoutIsKilled() throws {
        let dir = try ScratchDirectory("cli-timeout")
        defer { dir.remove() }
        let path = try write(
            """
            name: slow
            tasks:
              - name: nap
                exec: "sleep 30; echo > {out:x}"
            """, "slow.yaml", in: dir)
        let start = Date()
        let r = try ChildProcess.shoal(["run", path, "--timeout", "0.5"], timeoutSeconds: 20)
        #expect(r.status == 1, "stderr: \(r.stderr)")
        #expect(r.stderr.contains("task 'nap'"), "stderr: \(r.stderr)")
        #expect(r.stderr.contains("timed out after 0.5 s"), "stderr: \(r.stderr)")
        #expect(Date().timeIntervalSince(start) < 10)
    }

    @Test func graphRejectsAMalformedFile() throws {
        let dir = try ScratchDirectory("cli-graph-bad")
        defer { dir.remove() }
        let path = try write(
            """
            name: bad
            tasks:
              - name: a
                exec: "cat {in:nothing} > {out:x}"
            """, "bad.yaml", in: dir)
        let r = try ChildProcess.shoal(["graph", path])
        #expect(r.status == 2, "stderr: \(r.stderr)")
        #expect(r.stdout.isEmpty)
        #expect(r.stderr.hasPrefix("error: \(path):4:11: task 'a': undefined datum 'nothing'"), "stderr: \(r.stderr)")
    }

    @Test func runWritesTheOutputs() throws {
        let dir = try ScratchDirectory("cli-run")
        defer { dir.remove() }
        let out = dir.appending("out")
        let r = try ChildProcess.shoal(["run", Self.examplePath, "--output-dir", out.path, "--workers", "2"])
        #expect(r.status == 0, "stderr: \(r.stderr)")
        #expect(r.stdout.hasPrefix("workflow 'shout-twice': 7 of 7 tasks completed"), "stdout: \(r.stdout)")
        #expect(try String(contentsOf: out.appendingPathComponent("loud"), encoding: .utf8) == "HELLO\nHELLO\n")
        let log = try String(contentsOf: out.appendingPathComponent("log"), encoding: .utf8)
        #expect(log.split(separator: "\n").sorted() == ["0", "1", "2", "3"], "log: \(log)")
        let counts = try String(contentsOf: out.appendingPathComponent("counts"), encoding: .utf8)
        #expect(counts.hasPrefix("the 4\n"), "counts: \(counts)")
        #expect(r.stdout.contains("output loud: \(out.appendingPathComponent("loud").path)"), "stdout: \(r.stdout)")
    }

    @Test func runRecordsTheRunWithADataDirectory() throws {
        let dir = try ScratchDirectory("cli-record")
        defer { dir.remove() }
        let data = dir.appending("data").path
        let r = try ChildProcess.shoal(["run", Self.examplePath, "--data-dir", data])
        #expect(r.status == 0, "stderr: \(r.stderr)")
        let listing = try ChildProcess.shoal(["kv", "ls", "--table", "workflows", "--data-dir", data])
        #expect(listing.status == 0, "stderr: \(listing.stderr)")
        let lines = listing.stdout.split(separator: "\n")
        #expect(lines.count == 1, "ls: \(listing.stdout)")
        #expect(lines.first?.hasPrefix("shout-twice/") == true, "ls: \(listing.stdout)")
    }

    @Test func graphPrintsDOT() throws {
        let r = try ChildProcess.shoal(["graph", Self.examplePath])
        #expect(r.status == 0, "stderr: \(r.stderr)")
        #expect(r.stdout.hasPrefix("digraph \"shout-twice\" {\n"), "stdout: \(r.stdout)")
        #expect(r.stdout.contains("  \"shout\" -> \"twice\" [label=\"loud@v1\"];\n"), "stdout: \(r.stdout)")
        #expect(r.stdout.components(separatedBy: " -> ").count == 2, "exactly one edge: \(r.stdout)")
        #expect(r.stdout.hasSuffix("}\n"))
    }

    @Test func demoVerifiesExportsAndPersists() throws {
        let dir = try ScratchDirectory("cli-demo")
        defer { dir.remove() }
        let data = dir.appending("D")
        let export = dir.appending("E")
        let r = try ChildProcess.shoal(
            [
                "demo", "--neurons", "10", "--bins", "1000", "--surrogates", "20", "--fragments", "4",
                "--data-dir", data.path, "--export", export.path, "--verify",
            ], timeoutSeconds: 60)
        #expect(r.status == 0, "stderr: \(r.stderr)")
        #expect(r.stdout.contains("verified"), "stdout: \(r.stdout)")
        #expect(r.stdout.contains("45 pairs"), "stdout: \(r.stdout)")

        let shapes = ["spikes.npy": "(10, 1000)", "cc_original.npy": "(45, 101)", "cc_surrogates.npy": "(45, 101, 2)"]
        for (name, shape) in shapes {
            let bytes = try Data(contentsOf: export.appendingPathComponent(name))
            #expect(bytes.starts(with: [0x93] + Array("NUMPY".utf8)), "\(name) is not a .npy file")
            let header = String(decoding: bytes.prefix(256), as: UTF8.self)
            #expect(header.contains("'shape': \(shape)"), "\(name) header: \(header)")
        }

        guard let mdbStat = ["/usr/bin/mdb_stat", "/usr/local/bin/mdb_stat"].first(where: {
            FileManager.default.isExecutableFile(atPath: $0)
        }) else {
            print("mdb_stat not installed: skipping the LMDB check")
            return
        }
        let stat = try ChildProcess.run(URL(fileURLWithPath: mdbStat), ["-a", data.path])
        #expect(stat.status == 0, "stderr: \(stat.stderr)")
        let block = stat.stdout.components(separatedBy: "Status of ").first { $0.hasPrefix("values\n") }
        let values = try #require(block, "no 'values' table in: \(stat.stdout)")
        #expect(values.contains("Entries: 2\n"), "values: \(values)")
    }

    @Test func simulateReportsAViolationWithTheCommandThatReplaysIt() throws {
        let dir = try ScratchDirectory("cli-simulate")
        defer { dir.remove() }
        let scenario = dir.appending("tight.yaml").path
        // A convergence deadline no cluster can meet: the checker must fail the run.
        try "name: tight\npeers: 6\nduration: 5\nseeds: 1\njoinSpread: 1\nconvergeWithin: 0.0001\n"
            .write(toFile: scenario, atomically: true, encoding: .utf8)
        let failed = try ChildProcess.shoal(["simulate", scenario, "--seed", "9"])
        #expect(failed.status == 1)
        #expect(failed.stderr.contains("replay: shoal simulate \(scenario) --seed 9"), "\(failed.stderr)")
        let ok = try ChildProcess.shoal(["simulate", try Self.repoFile("Simulations/crash-and-restart.yaml"), "--seed", "3"])
        #expect(ok.status == 0, "\(ok.stdout)\(ok.stderr)")
        #expect(ok.stdout.contains("result: all invariants hold"))
        let bad = dir.appending("bad.yaml").path
        try "name: bad\npeers: many\n".write(toFile: bad, atomically: true, encoding: .utf8)
        #expect(try ChildProcess.shoal(["simulate", bad]).status == 2)
    }
}
