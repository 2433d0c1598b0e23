import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

@testable import Shoal

/// Writes `text` to a fresh read-only "version" file, as the store would keep it.
private func versionFile(_ text: String, name: String = "v") -> String {
    let path = makeTempDirectory("store").appendingPathComponent(name).path
    try! text.write(toFile: path, atomically: true, encoding: .utf8)
    try! FileManager.default.setAttributes([.posixPermissions: 0o444], ofItemAtPath: path)
    return path
}

private func contents(_ path: String?) -> String? {
    path.flatMap { try? String(contentsOfFile: $0, encoding: .utf8) }
}

@Suite("WorkflowFile exec runner and DOT")
struct WorkflowFileExecTests {
    let runner = ExecRunner()

    @Test func runsTheExampleCommands() throws {
        let wf = try loadWorkflow(exampleWorkflow, files: ["words.txt": "w\n"])
        let greeting = versionFile("hello\n")
        let shoutScratch = makeTempDirectory("scratch")
        let shout = try runner.run(.init(call: wf.tasks[0], scratch: shoutScratch, inputs: ["greeting": greeting]))
        #expect(shout.outputs.keys.sorted() == ["loud"])
        #expect(shout.outputs["loud"] == ExecRunner.outputPath(scratch: shoutScratch, datum: "loud").path)
        #expect(contents(shout.outputs["loud"]) == "HELLO\n")
        #expect(shout.command.contains("tr a-z A-Z < /"))

        // twice: {in:loud} twice and {out:loud} (one inout access): reads v1, writes v2.
        let twiceScratch = makeTempDirectory("scratch")
        let twice = try runner.run(.init(call: wf.tasks[1], scratch: twiceScratch, inputs: ["loud": shout.outputs["loud"]!]))
        #expect(contents(twice.outputs["loud"]) == "HELLO\nHELLO\n")
        #expect(contents(ExecRunner.inputPath(scratch: twiceScratch, datum: "loud").path) == "HELLO\n")
        #expect(contents(shout.outputs["loud"]) == "HELLO\n")  // the previous version is untouched

        // part-2: commutative starts as a writable copy of the previous version.
        let log = versionFile("0\n")
        let part = try runner.run(.init(call: wf.tasks[5], scratch: makeTempDirectory("scratch"), inputs: ["log": log]))
        #expect(contents(part.outputs["log"]) == "0\n2\n")
        #expect(contents(log) == "0\n")
    }

    @Test func concurrentUsesTheSharedPath() throws {
        let shared = versionFile("", name: "shared")
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: shared)
        let command = try CommandTemplate(parsing: "echo a >> {concurrent:s}; pwd > {out:where}")
        let scratch = makeTempDirectory("scratch")
        let r = try runner.run(.init(taskName: "c", command: command, scratch: scratch, sharedPaths: ["s": shared]))
        #expect(r.outputs["s"] == shared)
        #expect(contents(shared) == "a\n")
        // The command ran with the scratch folder as its working directory.
        let cwd = contents(r.outputs["where"])?.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(cwd.map { URL(fileURLWithPath: $0).resolvingSymlinksInPath().path }
            == scratch.resolvingSymlinksInPath().path)
    }

    @Test func failingCommandReportsExitCodeAndStderr() throws {
        let command = try CommandTemplate(parsing: "echo to-stdout; echo 'something broke' >&2; exit 3")
        do {
            _ = try runner.run(.init(taskName: "bad", command: command, scratch: makeTempDirectory("scratch")))
            Issue.record("expected a failure")
        } catch {
            #expect(error.exitCode == 3)
            #expect(error.taskName == "bad")
            #expect(error.stderrTail == "something broke\n")
            #expect(error.description.hasPrefix("task 'bad' failed: exit code 3\nstderr:\nsomething broke"))
        }
    }

    @Test func stderrIsBounded() throws {
        let small = ExecRunner(settings: .init(stderrTailBytes: 100))
        let command = try CommandTemplate(parsing: "i=0; while [ $i -lt 2000 ]; do echo line-$i >&2; i=$((i+1)); done; exit 1")
        do {
            _ = try small.run(.init(taskName: "noisy", command: command, scratch: makeTempDirectory("scratch")))
            Issue.record("expected a failure")
        } catch {
            #expect(error.stderrTail.utf8.count == 100)
            #expect(error.stderrTail.hasSuffix("line-1999\n"))
        }
    }

    @Test func missingInputAndOutput() throws {
        let reads = try CommandTemplate(parsing: "cat {in:x}")
        #expect(throws: ExecTaskFailure(taskName: "r", reason: .missingInput(datum: "x"))) {
            try runner.run(.init(taskName: "r", command: reads, scratch: makeTempDirectory("scratch")))
        }
        let writes = try CommandTemplate(parsing: "true {out:y}")
        do {
            _ = try runner.run(.init(taskName: "w", command: writes, scratch: makeTempDirectory("scratch")))
            Issue.record("expected a failure")
        } catch {
            #expect(error.reason == .missingOutput(datum: "y"))
        }
    }

    @Test func timeoutKillsTheProcessGroup() throws {
        let command = try CommandTemplate(parsing: "sleep 30; echo late > {out:x}")
        let start = Date()
        do {
            _ = try runner.run(.init(taskName: "slow", command: command, scratch: makeTempDirectory("scratch"), timeoutSeconds: 0.5))
            Issue.record("expected a timeout")
        } catch {
            #expect(error.reason == .timedOut(seconds: 0.5))
        }
        #expect(Date().timeIntervalSince(start) < 10)
    }

    @Test func backgroundLeftoversDoNotHangTheRunner() throws {
        let command = try CommandTemplate(parsing: "sleep 30 & echo done > {out:x}")
        let start = Date()
        let r = try ExecRunner(settings: .init(drainMs: 200))
            .run(.init(taskName: "bg", command: command, scratch: makeTempDirectory("scratch")))
        #expect(contents(r.outputs["x"]) == "done\n")
        #expect(Date().timeIntervalSince(start) < 10)
    }

    @Test func aCommandThatChangesItsInputFailsAndTheVersionIsUntouched() throws {
        let version = versionFile("original\n")
        for command in ["echo EVIL >> {in:d}", ": > {in:d}", "rm -f {in:d}", "chmod 600 {in:d}", "touch {in:d}"] {
            let template = try CommandTemplate(parsing: command)
            do {
                _ = try runner.run(
                    .init(taskName: "evil", command: template, scratch: makeTempDirectory("scratch"), inputs: ["d": version]))
                // Without root, writing the read-only copy fails the command itself instead.
                if getuid() == 0 { Issue.record("'\(command)' was not caught") }
            } catch {
                if getuid() == 0 || command.hasPrefix("rm") || command.hasPrefix("chmod") {
                    #expect(error.reason == .modifiedInput(datum: "d"), "\(command): \(error)")
                    #expect(error.description.contains("modified its read-only input 'd'"))
                }
            }
            #expect(contents(version) == "original\n", "\(command) reached the version file")
        }
    }

    @Test func aCommandWritingMegabytesQuicklyIsNotCutShort() throws {
        // 4 MiB to each pipe in large writes: the pipes' write ends must block, not fail with EAGAIN.
        let command = try CommandTemplate(
            parsing: "set -e; head -c 4194304 /dev/zero > {out:z}; cat {out:z}; cat {out:z} >&2; cat {out:z} {out:z} | wc -c > {out:n}")
        let r = try runner.run(.init(taskName: "loud", command: command, scratch: makeTempDirectory("scratch")))
        #expect(contents(r.outputs["n"])?.trimmingCharacters(in: .whitespacesAndNewlines) == "8388608")
        #expect(r.stdoutTail.count == ExecRunner.Settings().stdoutTailBytes)
        #expect(r.stderrTail.count == ExecRunner.Settings().stderrTailBytes)
    }

    @Test func anOutputThatIsNotARegularFileFails() throws {
        let command = try CommandTemplate(parsing: "mkdir {out:y}")
        do {
            _ = try runner.run(.init(taskName: "d", command: command, scratch: makeTempDirectory("scratch")))
            Issue.record("expected a failure")
        } catch {
            #expect(error.reason == .outputNotAFile(datum: "y", kind: .directory), "\(error)")
        }
    }

    @Test func aFIFOGivenAsAnInputIsRefusedWithoutBlocking() throws {
        let fifo = makeTempDirectory("fifo").appendingPathComponent("p").path
        #expect(mkfifo(fifo, 0o644) == 0)
        let command = try CommandTemplate(parsing: "cat {in:d}")
        do {
            _ = try runner.run(.init(taskName: "f", command: command, scratch: makeTempDirectory("scratch"), inputs: ["d": fifo]))
            Issue.record("expected a failure")
        } catch {
            guard case .setup(let message) = error.reason else {
                Issue.record("expected a setup failure, got \(error)")
                return
            }
            #expect(message.contains("FIFO"), "\(message)")
        }
    }

    @Test func dotOutputIsExact() {
        let dot = DotRenderer.render(
            name: "shout-twice",
            tasks: ["shout", "twice", "count"],
            edges: [
                DependenceEdge(from: "twice", to: "count", label: "loud@v2"),
                DependenceEdge(from: "shout", to: "twice", label: "loud@v1"),
                DependenceEdge(from: "shout", to: "twice", label: "loud@v1"),
                DependenceEdge(from: "shout", to: "count", label: "a\"b"),
            ])
        #expect(dot == """
            digraph "shout-twice" {
              rankdir=TB;
              node [shape=circle, style=filled, fillcolor="#4f81bd", fontcolor=white];
              edge [fontsize=10];
              "shout";
              "twice";
              "count";
              "shout" -> "twice" [label="loud@v1"];
              "shout" -> "count" [label="a\\"b"];
              "twice" -> "count" [label="loud@v2"];
            }

            """)
    }
}
