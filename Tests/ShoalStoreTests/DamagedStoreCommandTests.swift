import Foundation
import ShoalCore
import ShoalStore
import ShoalTestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// A damaged store is reported, never crashed on, never silently replaced: the real `shoal`
/// against truncated, empty, foreign and bit-flipped stores, and keys that are not UTF-8.
@Suite struct DamagedStoreCommandTests {
    /// How a child ended: its exit status, or the signal that killed it.
    struct Outcome: CustomStringConvertible {
        var exitStatus: Int32?
        var signal: Int32?
        var stdout: [UInt8]
        var stderr: String
        var stdoutText: String { String(decoding: stdout, as: UTF8.self) }
        var description: String {
            "\(exitStatus.map { "exit \($0)" } ?? "signal \(signal ?? -1)"); stderr: \(stderr)"
        }
    }

    /// Runs `shoal` with arguments given as raw bytes (Swift's `Process` only takes `String`s,
    /// which cannot hold invalid UTF-8), standard input from /dev/null, output to files. Kills
    /// the child after 60 s.
    static func shoal(_ arguments: [[UInt8]]) throws -> Outcome {
        let executable = try ShoalExecutable.url().path
        let scratch = try ScratchDirectory("raw")
        defer { scratch.remove() }
        let outPath = scratch.appending("stdout").path
        let errPath = scratch.appending("stderr").path

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, errPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)

        let argv: [UnsafeMutablePointer<CChar>?] =
            ([Array(executable.utf8)] + arguments).map { bytes in
                let copy = UnsafeMutablePointer<CChar>.allocate(capacity: bytes.count + 1)
                for (i, byte) in bytes.enumerated() { copy[i] = CChar(bitPattern: byte) }
                copy[bytes.count] = 0
                return copy
            } + [nil]
        defer { for pointer in argv { pointer?.deallocate() } }

        var pid: pid_t = 0
        let rc = posix_spawn(&pid, executable, &actions, nil, argv, environ)
        try #require(rc == 0, "posix_spawn failed: \(rc)")
        var status: Int32 = 0
        let deadline = Date().addingTimeInterval(60)
        while waitpid(pid, &status, WNOHANG) == 0 {
            if Date() > deadline {
                kill(pid, SIGKILL)
                waitpid(pid, &status, 0)
                Issue.record("shoal \(arguments.map { String(decoding: $0, as: UTF8.self) }) did not finish in 60 s")
                break
            }
            usleep(5_000)
        }
        // <sys/wait.h> macros: low 7 bits are the signal (0 for a normal exit), next byte the status.
        let signal = status & 0x7f
        return Outcome(
            exitStatus: signal == 0 ? (status >> 8) & 0xff : nil, signal: signal == 0 ? nil : signal,
            stdout: [UInt8]((try? Data(contentsOf: URL(fileURLWithPath: outPath))) ?? Data()),
            stderr: (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "")
    }

    static func shoal(_ arguments: [String]) throws -> Outcome { try shoal(arguments.map { Array($0.utf8) }) }

    /// Expects `shoal` to have exited 1 with one line saying the store in `directory` is damaged.
    static func expectDamagedReport(_ outcome: Outcome, _ directory: String, _ command: String) {
        #expect(outcome.exitStatus == 1, "\(command): \(outcome)")
        #expect(outcome.stderr.hasPrefix("error: the store in \(directory) is damaged: "), "\(command): \(outcome)")
        #expect(outcome.stderr.split(separator: "\n").count == 1, "\(command): \(outcome)")
    }

    // MARK: - Stores that cannot be opened

    /// The issue's case: a store of two keys truncated to 20,000 bytes. Every command that opens
    /// it reports the damage (get and ls used to die of SIGBUS; put used to succeed).
    @Test func truncatedStoreIsReportedByEveryCommand() throws {
        let scratch = try ScratchDirectory("truncated")
        defer { scratch.remove() }
        let store = scratch.appending("store").path
        #expect(try Self.shoal(["kv", "put", "k", "one", "--data-dir", store]).exitStatus == 0)
        #expect(try Self.shoal(["kv", "put", "k2", "two", "--data-dir", store]).exitStatus == 0)
        let dataFile = store + "/data.mdb"
        try #require(truncate(dataFile, 20_000) == 0)

        for command in [["kv", "get", "k"], ["kv", "ls"], ["kv", "put", "k3", "three"], ["kv", "rm", "k"]] {
            Self.expectDamagedReport(
                try Self.shoal(command + ["--data-dir", store]), store, command.joined(separator: " "))
        }
        let workflow = scratch.appending("tiny.yaml")
        try Data(
            """
            name: tiny
            data:
              greeting: "hello\\n"
            tasks:
              - name: shout
                exec: "tr a-z A-Z < {in:greeting} > {out:loud}"
            outputs: [loud]

            """.utf8
        ).write(to: workflow)
        Self.expectDamagedReport(try Self.shoal(["run", workflow.path, "--data-dir", store]), store, "run")
        #expect(try FileManager.default.attributesOfItem(atPath: dataFile)[.size] as? Int == 20_000)
    }

    @Test func emptyDataFileIsRefusedAndLeftEmpty() throws {
        let scratch = try ScratchDirectory("empty")
        defer { scratch.remove() }
        let store = scratch.path
        _ = FileManager.default.createFile(atPath: store + "/data.mdb", contents: Data())
        for command in [["kv", "put", "k", "v"], ["kv", "get", "k"], ["kv", "ls"]] {
            let outcome = try Self.shoal(command + ["--data-dir", store])
            Self.expectDamagedReport(outcome, store, command.joined(separator: " "))
            #expect(outcome.stderr.contains("data.mdb is empty"), "\(outcome)")
        }
        #expect(try FileManager.default.attributesOfItem(atPath: store + "/data.mdb")[.size] as? Int == 0)
    }

    @Test func foreignDataFileIsRefusedAndLeftAsIs() throws {
        let scratch = try ScratchDirectory("foreign")
        defer { scratch.remove() }
        let store = scratch.path
        var generator = SeededGenerator(seed: 42)
        let random = Data((0..<50_000).map { _ in UInt8(truncatingIfNeeded: generator.next()) })
        try random.write(to: URL(fileURLWithPath: store + "/data.mdb"))
        for command in [["kv", "put", "k", "v"], ["kv", "ls"]] {
            let outcome = try Self.shoal(command + ["--data-dir", store])
            Self.expectDamagedReport(outcome, store, command.joined(separator: " "))
            #expect(outcome.stderr.contains("not an LMDB file"), "\(outcome)")
        }
        #expect(try Data(contentsOf: URL(fileURLWithPath: store + "/data.mdb")) == random)
    }

    // MARK: - Damaged entries

    /// Replaces every occurrence of `old` in `file` with `new` (same length); returns how many.
    static func replaceBytes(in file: String, _ old: [UInt8], with new: [UInt8]) throws -> Int {
        precondition(old.count == new.count)
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: file)))
        var count = 0
        var i = 0
        while i + old.count <= bytes.count {
            if bytes[i..<(i + old.count)].elementsEqual(old) {
                bytes.replaceSubrange(i..<(i + old.count), with: new)
                count += 1
                i += old.count
            } else {
                i += 1
            }
        }
        try Data(bytes).write(to: URL(fileURLWithPath: file))
        return count
    }

    /// A flipped byte in a stored key used to rename the entry silently; now the record no longer
    /// matches its key.
    @Test func flippedKeyByteIsDetected() throws {
        let scratch = try ScratchDirectory("flipped-key")
        defer { scratch.remove() }
        let store = scratch.path
        #expect(try Self.shoal(["kv", "put", "victim", "precious", "--data-dir", store]).exitStatus == 0)
        try #require(
            try Self.replaceBytes(in: store + "/data.mdb", Array("victim".utf8), with: Array("victik".utf8)) >= 1)

        let get = try Self.shoal(["kv", "get", "victik", "--data-dir", store])
        #expect(get.exitStatus == 1, "\(get)")
        #expect(get.stdout.isEmpty)
        #expect(
            get.stderr == "error: checksum mismatch in table 'values' for key 'victik': the stored record is corrupt\n")
        let list = try Self.shoal(["kv", "ls", "--data-dir", store])
        #expect(list.stdoutText == "victik\tDAMAGED: checksum mismatch\n")
        #expect(list.exitStatus == 1, "\(list)")
    }

    /// `kv ls` used to stop at the first corrupt value and list nothing.
    @Test func listShowsEveryEntryAndMarksTheDamagedOne() throws {
        let scratch = try ScratchDirectory("ls-damaged")
        defer { scratch.remove() }
        let store = scratch.path
        for (key, value) in [("alpha", "first-value"), ("bravo", "second-value"), ("charlie", "third-value")] {
            #expect(try Self.shoal(["kv", "put", key, value, "--data-dir", store]).exitStatus == 0)
        }
        try #require(
            try Self.replaceBytes(in: store + "/data.mdb", Array("second-value".utf8), with: Array("second-valuE".utf8))
                >= 1)

        let list = try Self.shoal(["kv", "ls", "--data-dir", store])
        #expect(list.stdoutText == "alpha\t11\nbravo\tDAMAGED: checksum mismatch\ncharlie\t11\n")
        #expect(list.exitStatus == 1, "\(list)")
        #expect(list.stderr.contains("1 of the 3 entries listed from table 'values'"), "\(list)")
        // The undamaged entries stay readable.
        #expect(try Self.shoal(["kv", "get", "charlie", "--data-dir", store]).stdoutText == "third-value")
    }

    // MARK: - Keys that are not UTF-8

    /// `col\xff(` and `col\xc3(` used to become the same key (`col\u{FFFD}(`).
    @Test func keysThatAreNotUTF8AreRefused() throws {
        let scratch = try ScratchDirectory("not-utf8")
        defer { scratch.remove() }
        let store = scratch.appending("store").path
        let dataDir = [Array("--data-dir".utf8), Array(store.utf8)]

        let put = try Self.shoal(
            [Array("kv".utf8), Array("put".utf8), Array("col".utf8) + [0xff, 0x28], Array("A".utf8)] + dataDir)
        #expect(put.exitStatus == 2, "\(put)")
        #expect(
            put.stderr
                == "error: the key 'col\\xff(' is not valid UTF-8: shoal kv takes keys as UTF-8 text and never converts them\n"
        )
        #expect(!FileManager.default.fileExists(atPath: store), "a refused put must not create the store")

        #expect(try Self.shoal(["kv", "put", "col\u{FFFD}(", "B", "--data-dir", store]).exitStatus == 0)
        let get = try Self.shoal([Array("kv".utf8), Array("get".utf8), Array("col".utf8) + [0xc3, 0x28]] + dataDir)
        #expect(get.exitStatus == 2, "\(get)")
        #expect(get.stdout.isEmpty, "the converted key must not read another entry")
        let value = try Self.shoal([Array("kv".utf8), Array("put".utf8), Array("k".utf8), [0x76, 0xfe]] + dataDir)
        #expect(value.exitStatus == 2, "\(value)")
        #expect(value.stderr.contains("the argument 'v\\xfe' is not valid UTF-8"), "\(value)")
        #expect(try Self.shoal(["kv", "ls", "--data-dir", store]).stdoutText == "col\u{FFFD}(\t1\n")
    }

    /// Keys written by a program may be any bytes; `kv ls` shows them escaped, never converted.
    @Test func listEscapesKeysThatAreNotPrintableUTF8() throws {
        let scratch = try ScratchDirectory("escaped")
        defer { scratch.remove() }
        do {
            let shard = try LMDBShard(directory: scratch.path)
            try shard.put(Array("col".utf8) + [0xff, 0x28], bytes("a"), in: .values)
            try shard.put(Array("col".utf8) + [0xc3, 0x28], bytes("bb"), in: .values)
            try shard.put([0, 0, 0, 1], bytes("ccc"), in: .values)
            try shard.put(Array("back\\slash tab\t".utf8), bytes("dddd"), in: .values)
            try shard.put(Array("naïve".utf8), bytes("eeeee"), in: .values)
        }
        let list = try Self.shoal(["kv", "ls", "--data-dir", scratch.path])
        #expect(list.exitStatus == 0, "\(list)")
        #expect(
            list.stdoutText
                == "\\x00\\x00\\x00\\x01\t3\nback\\\\slash tab\\x09\t4\ncol\\xc3(\t2\ncol\\xff(\t1\nnaïve\t5\n")
    }
}
