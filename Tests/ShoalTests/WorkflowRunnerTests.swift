import Foundation
import ShoalTestSupport
import ShoalExamples
import ShoalStore
import Testing

@testable import Shoal

/// `Examples/workflows/<name>`, found from this file's path.
private func exampleWorkflowPath(_ name: String, filePath: String = #filePath) -> String {
    URL(fileURLWithPath: filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Examples/workflows/\(name)").path
}

private func text(_ url: URL) throws -> String { try String(contentsOf: url, encoding: .utf8) }

/// A workflow file written to `<dir>/<fileName>` and parsed.
private func workflowFile(_ yaml: String, in dir: ScratchDirectory, fileName: String = "wf.yaml") throws -> WorkflowFile {
    let path = dir.appending(fileName).path
    try yaml.write(toFile: path, atomically: true, encoding: .utf8)
    return try WorkflowFile.load(path: path)
}

/// A runner of `file` with the example tasks, working under `dir`.
private func runner(
    _ file: WorkflowFile, in dir: ScratchDirectory, options: RunOptions = RunOptions(runtime: RuntimeSettings(workers: 2)),
    outputs: Bool = true
) -> WorkflowRunner {
    WorkflowRunner(
        file: file, registry: ExampleTasks.registry, options: options, workDirectory: dir.appending("work"),
        outputDirectory: outputs ? dir.appending("out") : nil, commandTimeoutSeconds: 20)
}

@Suite("WorkflowRunner: workflow files end to end")
struct WorkflowRunnerTests {
    @Test func theExampleFileProducesItsOutputs() async throws {
        let dir = try ScratchDirectory("runner-example")
        defer { dir.remove() }
        let file = try WorkflowFile.load(path: exampleWorkflowPath("shout-twice.yaml"))
        let report = try await runner(file, in: dir).run()

        let out = dir.appending("out")
        #expect(try text(out.appendingPathComponent("loud")) == "HELLO\nHELLO\n")
        let log = try text(out.appendingPathComponent("log"))
        #expect(log.hasSuffix("\n"))
        #expect(log.split(separator: "\n").sorted() == ["0", "1", "2", "3"], "log: \(log)")
        let counts = try text(out.appendingPathComponent("counts"))
        #expect(counts.hasPrefix("the 4\n"), "counts: \(counts)")

        #expect(report.workflow == "shout-twice")
        #expect(report.tasks == 7)
        #expect(report.completed == 7)
        #expect(report.failed == 0 && report.cancelled == 0 && report.retried == 0)
        #expect(report.failures.isEmpty)
        #expect(Set(report.outputs.keys) == ["loud", "counts", "log"])
        #expect(report.outputs["loud"] == out.appendingPathComponent("loud").path)
        // Scratch folders are removed after each command.
        let scratch = try FileManager.default.contentsOfDirectory(atPath: dir.appending("work/shout-twice.1/scratch").path)
        #expect(scratch.isEmpty, "left behind: \(scratch)")
    }

    @Test func aFailingCommandFailsTheRunWithItsNameAndStderr() async throws {
        let dir = try ScratchDirectory("runner-fail")
        defer { dir.remove() }
        let file = try workflowFile(
            """
            name: failing
            tasks:
              - name: fine
                exec: "echo ok > {out:a}"
              - name: broken
                exec: "echo 'disk on fire' >&2; exit 3; echo never > {out:b}"
            """, in: dir)
        do {
            _ = try await runner(file, in: dir, outputs: false).run()
            Issue.record("the run did not fail")
        } catch let failure as WorkflowRunFailure {
            #expect(failure.report.failed == 1)
            guard let error = failure.cause as? ShoalError, case .taskFailed(let task, let message, let attempts) = error
            else {
                Issue.record("expected taskFailed, got \(failure.cause)")
                return
            }
            #expect(task == "broken")
            #expect(attempts == 1)
            #expect(message.contains("exit code 3"), "\(message)")
            #expect(message.contains("disk on fire"), "\(message)")
            #expect(error.description.contains("task 'broken'"), "\(error)")
        }
    }

    @Test func anIgnoredFailureDoesNotFailTheRun() async throws {
        let dir = try ScratchDirectory("runner-ignore")
        defer { dir.remove() }
        let file = try workflowFile(
            """
            name: ignoring
            tasks:
              - name: broken
                exec: "echo 'not this time' >&2; exit 5; echo never > {out:b}"
                onFailure: ignore
              - name: fine
                exec: "echo ok > {out:a}"
            outputs: [a]
            """, in: dir)
        let report = try await runner(file, in: dir).run()
        #expect(report.failed == 1)
        #expect(report.completed == 1)
        #expect(report.failures.count == 1)
        #expect(report.failures.first?.hasPrefix("task 'broken':") == true, "\(report.failures)")
        #expect(report.failures.first?.contains("not this time") == true, "\(report.failures)")
        #expect(try text(dir.appending("out/a")) == "ok\n")
    }

    @Test func retriesRunTheCommandAgain() async throws {
        let dir = try ScratchDirectory("runner-retry")
        defer { dir.remove() }
        let marker = dir.appending("marker").path
        let file = try workflowFile(
            """
            name: retrying
            tasks:
              - name: flaky
                exec: "if [ -e '\(marker)' ]; then echo second > {out:r}; else touch '\(marker)'; echo first >&2; exit 1; fi"
                retries: 2
            outputs: [r]
            """, in: dir)
        let report = try await runner(file, in: dir).run()
        #expect(report.completed == 1)
        #expect(report.failed == 0)
        #expect(report.retried == 1)
        #expect(try text(dir.appending("out/r")) == "second\n")
        #expect(FileManager.default.fileExists(atPath: marker))
    }

    @Test func concurrentTasksAllAppendToOneFile() async throws {
        let dir = try ScratchDirectory("runner-concurrent")
        defer { dir.remove() }
        let file = try workflowFile(
            """
            name: appending
            data:
              acc: "start\\n"
            tasks:
              - name: add-{i}
                foreach: { i: "0..<12" }
                exec: "echo line-{i} >> {concurrent:acc}"
              - name: count
                exec: "wc -l < {in:acc} | tr -d ' ' > {out:n}"
            outputs: [acc, n]
            """, in: dir)
        let report = try await runner(file, in: dir).run()
        #expect(report.completed == 13)
        let acc = try text(dir.appending("out/acc"))
        let lines = acc.split(separator: "\n").map(String.init)
        #expect(lines.first == "start", "acc: \(acc)")
        #expect(lines.dropFirst().sorted() == (0..<12).map { "line-\($0)" }.sorted(), "acc: \(acc)")
        #expect(try text(dir.appending("out/n")) == "13\n")
    }

    @Test func registeredTaskWithBadArgumentsIsRejectedWithItsLine() async throws {
        let dir = try ScratchDirectory("runner-args")
        defer { dir.remove() }
        let file = try workflowFile(
            """
            name: bad-args
            data:
              corpus: "a b c"
            tasks:
              - name: first
                exec: "cat {in:corpus} > {out:copy}"
              - name: count
                task: wordCount
                args: { minLength: "three" }
                in: [copy]
                out: [counts]
            """, in: dir)
        let r = runner(file, in: dir)
        let error = try #require(throws: WorkflowFileError.self) { try r.validate() }
        #expect(error.kind == .invalidValue)
        #expect(error.task == "count")
        #expect(error.field == "args")
        #expect(error.location?.line == 7)
        #expect(error.message.contains("minLength"), "\(error)")
        #expect(error.description.hasPrefix("\(dir.appending("wf.yaml").path):7:"), "\(error)")
        // run() validates first: nothing runs.
        await #expect(throws: WorkflowFileError.self) { _ = try await r.run() }
        #expect(!FileManager.default.fileExists(atPath: dir.appending("out").path))
    }

    @Test func dependenceGraphHasOnlyReadAfterWriteEdges() throws {
        let dir = try ScratchDirectory("runner-graph")
        defer { dir.remove() }
        let file = try workflowFile(
            """
            name: deps
            data:
              a: "x"
            tasks:
              - name: w1
                exec: "cat {in:a} > {out:b}"
              - name: r1
                exec: "cat {in:b} > {out:c}"
              - name: w2
                exec: "echo 2 > {out:b}"
              - name: g-{i}
                foreach: { i: "0..<2" }
                exec: "cat {in:c} >> {commutative:s}"
              - name: final
                exec: "cat {in:s} {in:b} > {out:z}"
            """, in: dir)
        let graph = file.dependenceGraph()
        #expect(graph.tasks == ["w1", "r1", "w2", "g-0", "g-1", "final"])
        let expected: [DependenceEdge] = [
            .init(from: "w1", to: "r1", label: "b@v1"),  // RAW
            .init(from: "r1", to: "g-0", label: "c@v1"),
            .init(from: "r1", to: "g-1", label: "c@v1"),
            .init(from: "g-0", to: "final", label: "s@v2"),  // each member of the group
            .init(from: "g-1", to: "final", label: "s@v2"),
            .init(from: "w2", to: "final", label: "b@v2"),
            // none for w1 -> w2 (WAW), r1 -> w2 (WAR) or g-0 <-> g-1 (commutative)
        ]
        func key(_ e: DependenceEdge) -> String { "\(e.from)->\(e.to) \(e.label)" }
        #expect(graph.edges.map(key).sorted() == expected.map(key).sorted())

        let dot = file.dot()
        #expect(dot.hasPrefix("digraph \"deps\" {\n"))
        #expect(dot.contains("  \"w1\" -> \"r1\" [label=\"b@v1\"];\n"), "\(dot)")
        #expect(dot.contains("  \"g-1\" -> \"final\" [label=\"s@v2\"];\n"), "\(dot)")
        #expect(!dot.contains("\"w1\" -> \"w2\""))
        #expect(!dot.contains("\"r1\" -> \"w2\""))
    }

    @Test func theRunIsRecordedInTheWorkflowsTable() async throws {
        let dir = try ScratchDirectory("runner-record")
        defer { dir.remove() }
        let file = try workflowFile(
            """
            name: recorded
            data:
              greeting: "hi\\n"
            tasks:
              - name: shout
                exec: "tr a-z A-Z < {in:greeting} > {out:loud}"
            outputs: [loud]
            """, in: dir)
        let store = try LMDBShard(directory: dir.appending("data").path)
        let report = try await runner(file, in: dir, options: RunOptions(runtime: RuntimeSettings(workers: 2), store: store)).run()
        #expect(try text(dir.appending("out/loud")) == "HI\n")

        let entries = try store.scan(.workflows, prefix: Array("recorded/".utf8), after: nil, limit: 10)
        #expect(entries.count == 1)
        let entry = try #require(entries.first)
        #expect(String(decoding: entry.key, as: UTF8.self).hasPrefix("recorded/20"))
        let recorded = try JSONDecoder().decode(WorkflowRunner.Report.self, from: Data(entry.value))
        #expect(recorded.workflow == "recorded")
        #expect(recorded.tasks == 1 && recorded.completed == 1 && recorded.failed == 0)
        #expect(recorded.outputs == report.outputs)
        #expect(try store.count(.workflows) == 1)
    }
}
