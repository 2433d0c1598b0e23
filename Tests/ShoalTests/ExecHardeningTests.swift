import Foundation
import ShoalTestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// `shoal run` against careless and hostile workflows (issue 8, classes 1, 2, 3 and 5): the real
/// binary as a child process, with a deadline, on loopback-free local files only. Commands write
/// the pids of what they start to files outside their scratch folder, so the tests can check
/// that nothing is left running.
@Suite("shoal run: outputs, processes, inputs, paths")
struct ExecHardeningTests {
    /// Writes `yaml` to `<dir>/w.yaml` and returns its path.
    private func workflow(_ yaml: String, in dir: ScratchDirectory) throws -> String {
        let path = dir.appending("w.yaml").path
        try yaml.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// The pids listed one per line in `path` (empty when it does not exist).
    private func pids(_ path: URL) -> [Int32] {
        ((try? String(contentsOf: path, encoding: .utf8)) ?? "").split(separator: "\n").compactMap { Int32($0) }
    }

    private func text(_ url: URL) -> String? { try? String(contentsOf: url, encoding: .utf8) }

    /// A shell snippet that writes `alive` to `seen` if any pid listed in `pidFile` still runs
    /// (exists and is not a zombie), else `gone`.
    static func reportAlive(_ pidFile: URL, into seen: URL) -> String {
        "r=gone; for p in $(cat '\(pidFile.path)'); do if [ -e /proc/$p ] && ! grep -q '^State:.Z' /proc/$p/status; then r=alive; fi; done; echo $r > '\(seen.path)'"
    }

    private static let oneOutput = """
        name: x
        tasks:
          - name: a
            exec: "echo hi > {out:y}"
        outputs: [y]
        """

    // MARK: 1. Never destroy what the user did not create

    @Test func aDirectoryAtAnOutputIsRefusedBeforeAnyTaskRuns() throws {
        let dir = try ScratchDirectory("out-dir")
        defer { dir.remove() }
        let marker = dir.appending("ran")
        let path = try workflow(
            """
            name: x
            tasks:
              - name: a
                exec: "touch '\(marker.path)'; echo hi > {out:y}"
            outputs: [y]
            """, in: dir)
        let out = dir.appending("o")
        try FileManager.default.createDirectory(at: out.appendingPathComponent("y/sub"), withIntermediateDirectories: true)
        try "keep\n".write(to: out.appendingPathComponent("y/sub/f"), atomically: true, encoding: .utf8)

        let r = try ChildProcess.shoal(["run", path, "--output-dir", out.path])
        #expect(r.status == 2, "stderr: \(r.stderr)")
        #expect(r.stderr.contains("output 'y'") && r.stderr.contains("a directory"), "stderr: \(r.stderr)")
        #expect(text(out.appendingPathComponent("y/sub/f")) == "keep\n")
        #expect(!FileManager.default.fileExists(atPath: marker.path), "a task ran before the check")
    }

    @Test func aSymlinkOrFIFOAtAnOutputIsRefusedAndLeftAlone() throws {
        let dir = try ScratchDirectory("out-link")
        defer { dir.remove() }
        let path = try workflow(Self.oneOutput, in: dir)
        let out = dir.appending("o")
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
        let outside = dir.appending("precious")
        try "precious\n".write(to: outside, atomically: true, encoding: .utf8)
        try FileManager.default.createSymbolicLink(atPath: out.appendingPathComponent("y").path, withDestinationPath: outside.path)

        let r = try ChildProcess.shoal(["run", path, "--output-dir", out.path])
        #expect(r.status == 2, "stderr: \(r.stderr)")
        #expect(r.stderr.contains("a symbolic link"), "stderr: \(r.stderr)")
        #expect(text(outside) == "precious\n")
        #expect((try? FileManager.default.destinationOfSymbolicLink(atPath: out.appendingPathComponent("y").path)) == outside.path)

        try FileManager.default.removeItem(at: out.appendingPathComponent("y"))
        #expect(mkfifo(out.appendingPathComponent("y").path, 0o644) == 0)
        let fifo = try ChildProcess.shoal(["run", path, "--output-dir", out.path])
        #expect(fifo.status == 2, "stderr: \(fifo.stderr)")
        #expect(fifo.stderr.contains("FIFO"), "stderr: \(fifo.stderr)")
    }

    @Test func aRegularFileAtAnOutputIsReplacedWithNothingLeftBeside() throws {
        let dir = try ScratchDirectory("out-replace")
        defer { dir.remove() }
        let path = try workflow(Self.oneOutput, in: dir)
        let out = dir.appending("o")
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
        try "old\n".write(to: out.appendingPathComponent("y"), atomically: true, encoding: .utf8)
        let r = try ChildProcess.shoal(["run", path, "--output-dir", out.path])
        #expect(r.status == 0, "stderr: \(r.stderr)")
        #expect(text(out.appendingPathComponent("y")) == "hi\n")
        #expect(try FileManager.default.contentsOfDirectory(atPath: out.path) == ["y"])
    }

    // MARK: 2. A run always ends, and leaves no process behind

    @Test func aBackgroundChildDoesNotOutliveItsTask() throws {
        let dir = try ScratchDirectory("bg")
        defer { dir.remove() }
        let pidFile = dir.appending("pids"), seen = dir.appending("seen")
        // One holds the task's pipes, one does not; neither may keep the run (or itself) alive.
        // Task b runs once a has ended (one worker) and records whether they are still there.
        let path = try workflow(
            """
            name: x
            tasks:
              - name: a
                exec: "sleep 601 & echo $! >> '\(pidFile.path)'; sleep 602 >/dev/null 2>&1 & echo $! >> '\(pidFile.path)'; echo done > {out:y}"
              - name: b
                exec: "cat {in:y} > /dev/null; \(Self.reportAlive(pidFile, into: seen))"
            outputs: [y]
            """, in: dir)
        let start = Date()
        // The old runner waited for the pipes, so the run outlived even a long timeout.
        let r = try ChildProcess.shoal(["run", path, "--workers", "1", "--timeout", "20", "--output-dir", dir.appending("o").path])
        #expect(r.status == 0, "stderr: \(r.stderr)")
        #expect(Date().timeIntervalSince(start) < 10)
        #expect(text(dir.appending("o/y")) == "done\n")
        #expect(text(seen) == "gone\n", "a's background children outlived it")
        let started = pids(pidFile)
        #expect(started.count == 2)
        #expect(Processes.eventually { !started.contains(where: Processes.isRunning) }, "still running: \(started)")
    }

    @Test func descendantsThatLeaveTheProcessGroupAreKilledToo() throws {
        let dir = try ScratchDirectory("setsid")
        defer { dir.remove() }
        let pidFile = dir.appending("pids"), seen = dir.appending("seen")
        // setsid, a double fork (the subshell exits at once) and nohup; then the task times out.
        // Task b runs after a (one worker) and records whether any of them is still there.
        let path = try workflow(
            """
            name: x
            tasks:
              - name: a
                exec: "setsid sleep 1003 & echo $! >> '\(pidFile.path)'; (setsid sleep 1005 & echo $! >> '\(pidFile.path)'); nohup sleep 1006 >/dev/null 2>&1 & echo $! >> '\(pidFile.path)'; sleep 1004"
                onFailure: ignore
              - name: b
                exec: "\(Self.reportAlive(pidFile, into: seen))"
            """, in: dir)
        let start = Date()
        let r = try ChildProcess.shoal(["run", path, "--workers", "1", "--timeout", "3"], timeoutSeconds: 30)
        #expect(r.status == 0, "stderr: \(r.stderr)")
        #expect(r.stdout.contains("timed out after 3.0 s"), "stdout: \(r.stdout)")
        #expect(Date().timeIntervalSince(start) < 15)
        #expect(text(seen) == "gone\n", "a's descendants outlived it")
        let started = pids(pidFile)
        #expect(started.count == 3)
        #expect(Processes.eventually { !started.contains(where: Processes.isRunning) }, "still running: \(started)")
    }

    @Test func escapedDescendantsOfASuccessfulTaskAreKilledWhenItEnds() throws {
        let dir = try ScratchDirectory("escape-ok")
        defer { dir.remove() }
        let pidFile = dir.appending("pids")
        let seen = dir.appending("seen")
        // Task b runs after a ends and records whether a's escaped child was still alive then.
        let path = try workflow(
            """
            name: x
            tasks:
              - name: a
                exec: "(setsid sleep 1009 & echo $! > '\(pidFile.path)'); echo > {out:y}"
              - name: b
                exec: "cat {in:y} > /dev/null; if kill -0 $(cat '\(pidFile.path)') 2>/dev/null && ! grep -q '^State:.Z' /proc/$(cat '\(pidFile.path)')/status; then echo alive; else echo gone; fi > '\(seen.path)'"
            """, in: dir)
        let r = try ChildProcess.shoal(["run", path, "--workers", "1"])
        #expect(r.status == 0, "stderr: \(r.stderr)")
        #expect(text(seen) == "gone\n")
    }

    @Test(arguments: [(SIGINT, "SIGINT"), (SIGTERM, "SIGTERM"), (SIGHUP, "SIGHUP")])
    func aSignalKillsEveryCommandRemovesScratchAndExitsWith128PlusIt(signal: Int32, name: String) throws {
        let dir = try ScratchDirectory("signal")
        defer { dir.remove() }
        let pidFile = dir.appending("pids"), shellFile = dir.appending("shells")
        let path = try workflow(
            """
            name: sig
            tasks:
              - name: t{i}
                foreach: { i: "0..<2" }
                exec: "setsid sleep 2001 & echo $! >> '\(pidFile.path)'; echo $$ >> '\(shellFile.path)'; exec sleep 2000"
            """, in: dir)
        let temp = dir.appending("tmp")
        try FileManager.default.createDirectory(at: temp, withIntermediateDirectories: true)
        let work = dir.appending("work")
        // The default (temporary) work folder is removed; a given one loses its scratch folders.
        for useWorkDir in [false, true] {
            try? FileManager.default.removeItem(at: pidFile)
            try? FileManager.default.removeItem(at: shellFile)
            let child = try BackgroundChild.shoal(
                ["run", path, "--workers", "2"] + (useWorkDir ? ["--work-dir", work.path] : []),
                environment: ["TMPDIR": temp.path + "/"])
            #expect(Processes.eventually { pids(pidFile).count == 2 && pids(shellFile).count == 2 }, "the commands did not start")
            let started = pids(pidFile) + pids(shellFile)
            for pid in pids(shellFile) {
                // Clean signal state: nothing blocked, no classic signal ignored. (Only the
                // commands themselves: sh makes its background children ignore SIGINT and SIGQUIT.)
                let masks = try #require(Processes.signalMasks(pid))
                #expect(masks.blocked == 0, "pid \(pid) blocks \(String(masks.blocked, radix: 16))")
                #expect(masks.ignored & 0x7fff_ffff == 0, "pid \(pid) ignores \(String(masks.ignored, radix: 16))")
            }
            kill(child.pid, signal)
            let r = try child.wait(timeoutSeconds: 20)
            #expect(r.status == 128 + signal, "\(name): stderr: \(r.stderr)")
            #expect(r.stderr.contains("interrupted by \(name)"), "stderr: \(r.stderr)")
            #expect(Processes.eventually { !started.contains(where: Processes.isRunning) }, "still running: \(started)")
            #expect(try FileManager.default.contentsOfDirectory(atPath: temp.path).isEmpty)
            if useWorkDir {
                #expect(!FileManager.default.fileExists(atPath: work.appendingPathComponent("sig.1/scratch").path))
            }
        }
    }

    @Test func everyAttemptStartsInAnEmptyScratchFolder() throws {
        let dir = try ScratchDirectory("scratch-reuse")
        defer { dir.remove() }
        // a leaves files, a read-only folder and a read-only working folder behind; b, on the
        // same worker, must find nothing of it, and the run must leave no scratch folder.
        let path = try workflow(
            """
            name: x
            tasks:
              - name: a
                exec: "touch junk; mkdir -p d/e; touch d/e/f; chmod 000 d; echo > {out:y}; touch out/extra; chmod 500 ."
              - name: b
                exec: "cat {in:y} > /dev/null; ls -A > {out:z}; ls -A out in >> {out:z}"
            outputs: [z]
            """, in: dir)
        let work = dir.appending("work")
        let r = try ChildProcess.shoal(["run", path, "--workers", "1", "--work-dir", work.path, "--output-dir", dir.appending("o").path])
        #expect(r.status == 0, "stderr: \(r.stderr)")
        #expect(text(dir.appending("o/z")) == "in\nout\nin:\ny\n\nout:\nz\n", "\(text(dir.appending("o/z")) ?? "none")")
        #expect(try FileManager.default.contentsOfDirectory(atPath: work.appendingPathComponent("x.1/scratch").path).isEmpty)
    }

    @Test func manyWorkersRunManyCommands() throws {
        let dir = try ScratchDirectory("workers")
        defer { dir.remove() }
        let path = try workflow(
            """
            name: many
            tasks:
              - name: t{i}
                foreach: { i: "0..<2000" }
                exec: "true"
            """, in: dir)
        let r = try ChildProcess.shoal(["run", path, "--workers", "500"], timeoutSeconds: 120)
        #expect(r.status == 0, "stderr: \(r.stderr)")
        #expect(r.stdout.contains("2000 of 2000 tasks completed"), "stdout: \(r.stdout)")
    }

    @Test(arguments: [
        ["--workers", "0"], ["--workers=-3"], ["--workers", "100000"],
        ["--timeout", "0"], ["--timeout=-1"], ["--timeout", "nan"], ["--timeout", "inf"], ["--timeout", "1e300"],
    ])
    func badWorkersAndTimeoutsAreRefused(options: [String]) throws {
        let dir = try ScratchDirectory("bad-option")
        defer { dir.remove() }
        let path = try workflow(Self.oneOutput, in: dir)
        let r = try ChildProcess.shoal(["run", path] + options + ["--output-dir", dir.appending("o").path])
        #expect(r.status == 2, "\(options): stderr: \(r.stderr)")
        #expect(r.stderr.hasPrefix("error: --\(options[0].dropFirst(2).prefix { $0 != "=" }) must be"), "stderr: \(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir.appending("o").path))
    }

    // MARK: 3. A task can never change what another task reads

    @Test func aTaskThatWritesItsInputFailsAndNobodyElseSeesIt() throws {
        let dir = try ScratchDirectory("evil")
        defer { dir.remove() }
        // Run as root (as CI is), the read-only mode stops nothing: only the copy does.
        let path = try workflow(
            """
            name: x
            data:
              d: "good\\n"
            tasks:
              - name: evil
                exec: "chmod u+w {in:d}; echo EVIL >> {in:d}"
                onFailure: ignore
              - name: truncate
                exec: ": > {in:d}"
                onFailure: ignore
              - name: reader
                exec: "cat {in:d} > {out:e}"
            outputs: [d, e]
            """, in: dir)
        let r = try ChildProcess.shoal(["run", path, "--workers", "1", "--output-dir", dir.appending("o").path])
        #expect(r.status == 0, "stderr: \(r.stderr)")
        #expect(text(dir.appending("o/d")) == "good\n")
        #expect(text(dir.appending("o/e")) == "good\n")
        #expect(r.stdout.contains("2 failed"), "stdout: \(r.stdout)")
        // The owner of a file may always chmod it, so 'evil' gets through whoever runs the test.
        #expect(r.stdout.contains("task 'evil' failed: the command modified its read-only input 'd'"), "stdout: \(r.stdout)")
        if getuid() == 0 {
            #expect(r.stdout.contains("task 'truncate' failed: the command modified its read-only input 'd'"), "stdout: \(r.stdout)")
        }
    }

    // MARK: 5. Bad paths are refused before the run, in plain words

    @Test func aFileWhereAFolderMustBeIsRefusedBeforeTheRun() throws {
        let dir = try ScratchDirectory("bad-paths")
        defer { dir.remove() }
        let marker = dir.appending("ran")
        let path = try workflow(
            """
            name: x
            tasks:
              - name: a
                exec: "touch '\(marker.path)'; echo hi > {out:y}"
            outputs: [y]
            """, in: dir)
        let file = dir.appending("a-file")
        try "x".write(to: file, atomically: true, encoding: .utf8)
        let unmade = dir.appending("not-made")
        for (option, words) in [
            ("--output-dir", "output folder"), ("--work-dir", "work folder"), ("--data-dir", "data folder"),
        ] {
            for bad in [file.path, file.path + "/below"] {
                // The good folders of a refused run are not made either.
                let good = option == "--output-dir" ? ["--work-dir", unmade.path] : ["--output-dir", unmade.path]
                let r = try ChildProcess.shoal(["run", path, option, bad] + good)
                #expect(!FileManager.default.fileExists(atPath: unmade.path), "\(option): a refused run made \(unmade.path)")
                #expect(r.status == 2, "\(option) \(bad): stderr: \(r.stderr)")
                #expect(r.stderr.hasPrefix("error: the \(words)"), "stderr: \(r.stderr)")
                #expect(!r.stderr.contains("NSCocoaErrorDomain") && !r.stderr.contains("Error Domain"), "stderr: \(r.stderr)")
                #expect(!FileManager.default.fileExists(atPath: marker.path), "a task ran before the check")
            }
        }
    }

    @Test func aWorkFolderCanBeUsedAgain() throws {
        let dir = try ScratchDirectory("work-again")
        defer { dir.remove() }
        let path = try workflow(Self.oneOutput, in: dir)
        let work = dir.appending("work")
        for _ in 0..<2 {
            let r = try ChildProcess.shoal(["run", path, "--work-dir", work.path, "--output-dir", dir.appending("o").path])
            #expect(r.status == 0, "stderr: \(r.stderr)")
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: work.path).sorted() == ["x.1", "x.2"])
    }

    @Test func aFailedRunWritesTheOutputsThatCompletedAndNamesTheRest() throws {
        let dir = try ScratchDirectory("partial")
        defer { dir.remove() }
        let path = try workflow(
            """
            name: x
            tasks:
              - name: good
                exec: "echo fine > {out:a}"
              - name: bad
                exec: "cat {in:a} > /dev/null; exit 4; echo > {out:b}"
              - name: after
                exec: "cat {in:b} > {out:c}"
            outputs: [a, b, c]
            """, in: dir)
        let r = try ChildProcess.shoal(["run", path, "--output-dir", dir.appending("o").path])
        #expect(r.status == 1, "stderr: \(r.stderr)")
        #expect(text(dir.appending("o/a")) == "fine\n")
        #expect(!FileManager.default.fileExists(atPath: dir.appending("o/b").path))
        #expect(r.stdout.contains("output a: \(dir.appending("o/a").path)"), "stdout: \(r.stdout)")
        #expect(r.stdout.contains("output b: not written"), "stdout: \(r.stdout)")
        #expect(r.stdout.contains("output c: not written"), "stdout: \(r.stdout)")
        #expect(r.stderr.contains("task 'bad'") && r.stderr.contains("exit code 4"), "stderr: \(r.stderr)")
    }

    @Test func foldersGivenThroughSymbolicLinksAreFollowed() throws {
        let dir = try ScratchDirectory("linked")
        defer { dir.remove() }
        let path = try workflow(Self.oneOutput, in: dir)
        let real = dir.appending("real")
        try FileManager.default.createDirectory(at: real, withIntermediateDirectories: true)
        let link = dir.appending("link")
        try FileManager.default.createSymbolicLink(atPath: link.path, withDestinationPath: real.path)
        let r = try ChildProcess.shoal([
            "run", path, "--work-dir", link.path, "--output-dir", link.appendingPathComponent("new/out").path,
            "--data-dir", link.appendingPathComponent("data").path,
        ])
        #expect(r.status == 0, "stderr: \(r.stderr)")
        #expect(text(real.appendingPathComponent("new/out/y")) == "hi\n")
        #expect(FileManager.default.fileExists(atPath: real.appendingPathComponent("data/data.mdb").path))
    }

    @Test func anOutputHardLinkedToAnotherFileIsCopiedAndTheFileLeftAlone() throws {
        let dir = try ScratchDirectory("hardlink")
        defer { dir.remove() }
        let notes = dir.appending("notes")
        try "mine\n".write(to: notes, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o640], ofItemAtPath: notes.path)
        let path = try workflow(
            """
            name: x
            tasks:
              - name: a
                exec: "ln '\(notes.path)' {out:y}"
            outputs: [y]
            """, in: dir)
        let r = try ChildProcess.shoal(["run", path, "--output-dir", dir.appending("o").path])
        #expect(r.status == 0, "stderr: \(r.stderr)")
        #expect(text(dir.appending("o/y")) == "mine\n")
        let attributes = try FileManager.default.attributesOfItem(atPath: notes.path)
        #expect((attributes[.posixPermissions] as? Int) == 0o640, "the user's file was re-moded: \(attributes)")
        #expect((attributes[.referenceCount] as? Int) == 1, "the run kept a link to the user's file")
    }

    @Test func aFailingCommandFailsEvenWhenShoalStartsWithSIGCHLDIgnored() throws {
        let dir = try ScratchDirectory("sigchld")
        defer { dir.remove() }
        let path = try workflow(
            """
            name: x
            tasks:
              - name: a
                exec: "echo broken >&2; exit 3"
            """, in: dir)
        // `trap '' CHLD` makes the shell ignore SIGCHLD, and exec hands that on to shoal: with it
        // ignored, the kernel reaps children at once and no exit status can be read.
        let shoal = try ShoalExecutable.url().path
        let r = try ChildProcess.run(URL(fileURLWithPath: "/bin/sh"), ["-c", "trap '' CHLD; exec \"$0\" run \"$1\"", shoal, path])
        #expect(r.status == 1, "stderr: \(r.stderr)")
        #expect(r.stderr.contains("exit code 3"), "stderr: \(r.stderr)")
    }

    @Test func aCommandHasNoTerminalToStopOn() throws {
        // Each command leads a session of its own: a program that reads the terminal fails at
        // once instead of stopping its group (SIGTTIN) and the run with it.
        let dir = try ScratchDirectory("session")
        defer { dir.remove() }
        let path = try workflow(
            """
            name: x
            tasks:
              - name: a
                exec: "if [ \\"$(cut -d' ' -f6 /proc/$$/stat)\\" = \\"$$\\" ]; then echo leader; else echo member; fi > {out:y}"
            outputs: [y]
            """, in: dir)
        let r = try ChildProcess.shoal(["run", path, "--output-dir", dir.appending("o").path])
        #expect(r.status == 0, "stderr: \(r.stderr)")
        #expect(text(dir.appending("o/y")) == "leader\n")
    }

    @Test func aSignalThatShoalWasStartedIgnoringStaysIgnored() throws {
        // `nohup shoal run … &` must survive the hang-up that logging out sends.
        let dir = try ScratchDirectory("nohup")
        defer { dir.remove() }
        let started = dir.appending("started")
        let path = try workflow(
            """
            name: x
            tasks:
              - name: a
                exec: "touch '\(started.path)'; sleep 1; echo done > {out:y}"
            outputs: [y]
            """, in: dir)
        let shoal = try ShoalExecutable.url().path
        let child = try BackgroundChild(
            URL(fileURLWithPath: "/bin/sh"),
            ["-c", "trap '' HUP; exec \"$0\" run \"$1\" --output-dir \"$2\"", shoal, path, dir.appending("o").path])
        #expect(Processes.eventually { FileManager.default.fileExists(atPath: started.path) }, "the command did not start")
        kill(child.pid, SIGHUP)
        let r = try child.wait(timeoutSeconds: 20)
        #expect(r.status == 0, "stderr: \(r.stderr)")
        #expect(text(dir.appending("o/y")) == "done\n")
    }
}
