import ArgumentParser
import Foundation
import Shoal
import ShoalCore
import ShoalExamples
import ShoalPeer
import ShoalWire

#if canImport(Glibc)
    import Glibc
#endif

/// `shoal bench peers`: real peer processes on loopback (trusted-network mode, so the figures are
/// the peers' and not CURVE's). How long a peer takes from exec to `ready`, beside exec-to-exit
/// of `/bin/true` in the same run; and empty registered tasks submitted at one peer of three and
/// run across them, beside the same workflow file on the local engine in this process (`shoal
/// run`'s path): the bare scheduler of one peer.
struct BenchPeers: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "peers", abstract: "Peer start to ready, and empty tasks per second across three peers, vs references.")

    @Option(help: "Empty tasks in the workflow.") var tasks = 20_000
    @Option(help: "Runs of each measurement (median and best printed).") var runs = 3
    @Option(help: "Task slots per peer.") var slots = 2
    @Option(help: "Jobs per slot handed to each peer's workers (its queue-depth).") var queueDepth = 1

    func validate() throws {
        guard (1...1_000_000).contains(tasks) else { throw ValidationError("--tasks must be 1 to 1000000") }
        guard (1...20).contains(runs) else { throw ValidationError("--runs must be 1 to 20") }
        guard (1...64).contains(slots) else { throw ValidationError("--slots must be 1 to 64") }
    }

    func run() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("shoal-bench-peers-\(getpid())")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let me = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()

        // 1. Start to ready.
        var ready: [Double] = []
        var spawn: [Double] = []
        for i in 0..<max(5, runs) {
            let t0 = ContinuousClock.now
            let peer = try PeerProcess(me, ["--listen", "tcp://127.0.0.1:0", "--data-dir", folder.path + "/start-\(i)"])
            _ = try peer.waitReady()
            ready.append((ContinuousClock.now - t0).seconds)
            peer.kill()
            let t1 = ContinuousClock.now
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/bin/true")
            try p.run()
            p.waitUntilExit()
            spawn.append((ContinuousClock.now - t1).seconds)
        }
        ready.sort()
        spawn.sort()
        let r = ready[ready.count / 2], s = spawn[spawn.count / 2]
        print(String(format: "peer start to ready: median %.1f ms, best %.1f ms (%d runs); /bin/true exec to exit %.1f ms; ratio %.1f",
            r * 1e3, ready[0] * 1e3, ready.count, s * 1e3, r / s))

        // 2. Empty tasks across three peers.
        let first = try PeerProcess(
            me, ["--listen", "tcp://127.0.0.1:0", "--data-dir", folder.path + "/a", "--slots", String(slots)])
        let seed = try first.waitReady()
        var peers = [first]
        for n in ["b", "c"] {
            let p = try PeerProcess(
                me,
                [
                    "--listen", "tcp://127.0.0.1:0", "--seeds", seed, "--data-dir", folder.path + "/" + n, "--slots", String(slots),
                    "--queue-depth", String(queueDepth),
                ])
            _ = try p.waitReady()
            peers.append(p)
        }
        defer { for p in peers { p.kill() } }
        let addresses = try peers.map { try $0.waitReady() }
        let client = try ClientConnection(peer: addresses[1], peerKey: nil, key: nil)
        // Until all three see each other.
        for _ in 0..<100 {
            var q = ClientRequest()
            q.status = Shoal_Wire_V1_StatusRequest()
            if let (reply, _) = try? await client.ask(q), case .status(let st)? = reply.kind,
                st.members.filter({ $0.status == .alive }).count == 3
            {
                break
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        let text = """
            name: empty-tasks
            data:
              seed: "x"
            tasks:
              - name: e-{i}
                foreach: { i: "0..<\(tasks)" }
                task: empty
                in: [seed]
            outputs: []

            """
        let file = folder.path + "/empty.yaml"
        try text.write(toFile: file, atomically: true, encoding: .utf8)
        var cluster: [Double] = []
        var running: [Double] = []
        var local: [Double] = []
        for _ in 0..<runs {
            var submit = Shoal_Wire_V1_SubmitFile()
            submit.path = "empty.yaml"
            submit.text = text
            submit.follow = true
            var q = ClientRequest()
            q.submit = submit
            let t0 = ContinuousClock.now
            let id = await client.send(q)
            var submitted = t0
            while true {
                let (reply, _) = try await client.next(for: id, timeout: .seconds(600))
                if case .submitted? = reply.kind { submitted = ContinuousClock.now }
                if case .finished(let f)? = reply.kind {
                    guard f.outcome == .completed else { throw ClientError("the workflow failed: \(f.reason)") }
                    break
                }
                if case .error(let e)? = reply.kind { throw ClientError(e.message) }
            }
            cluster.append((ContinuousClock.now - t0).seconds)
            running.append((ContinuousClock.now - submitted).seconds)
            let workflow = try WorkflowFile.load(path: file)
            let runner = WorkflowRunner(
                file: workflow, registry: ExampleTasks.registry, options: RunOptions(),
                workDirectory: folder.appendingPathComponent("local"), outputDirectory: nil)
            let t1 = ContinuousClock.now
            _ = try await runner.run()
            local.append((ContinuousClock.now - t1).seconds)
        }
        cluster.sort()
        running.sort()
        local.sort()
        let c = Double(tasks) / cluster[cluster.count / 2], l = Double(tasks) / local[local.count / 2]
        print(String(format: "%d empty tasks submitted at one peer of three (%d slots each, queue depth %d): median %.0f tasks/s, best %.0f (%d runs, submit to finished)",
            tasks, slots, queueDepth, c, Double(tasks) / cluster[0], runs))
        print(String(format: "  of which after the peer parsed the file and answered 'submitted': median %.0f tasks/s",
            Double(tasks) / running[running.count / 2]))
        print(String(format: "the same file on the local engine in this process: median %.0f tasks/s; cluster/local %.3f", l, c / l))
        var ran: [String] = []
        for a in addresses {
            let conn = try ClientConnection(peer: a, peerKey: nil, key: nil)
            var q = ClientRequest()
            q.status = Shoal_Wire_V1_StatusRequest()
            if let (reply, _) = try? await conn.ask(q), case .status(let st)? = reply.kind {
                var line = "\(a): \(st.tasksRun) run, \(st.stealsMade) steals"
                if st.stealRoundTrips > 0 {
                    line += ", steal round trip p50 \(st.stealRoundTripP50Us) µs p99 \(st.stealRoundTripP99Us) µs (\(st.stealRoundTrips) requests)"
                }
                ran.append(line)
            }
        }
        print("per peer:\n  " + ran.joined(separator: "\n  "))
    }
}

/// A `shoal peer start` child in trusted-network mode, killed by `kill()`.
final class PeerProcess {
    let process = Process()
    let out = Pipe()
    var address: String?

    init(_ executable: URL, _ arguments: [String]) throws {
        process.executableURL = executable
        process.arguments = ["peer", "start", "--security", "none", "--log-level", "warning"] + arguments
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        try process.run()
    }

    /// Waits for the `ready <id> <address>` line; returns the address.
    func waitReady() throws -> String {
        if let address { return address }
        var line = Data()
        while true {
            let byte = out.fileHandleForReading.readData(ofLength: 1)
            guard !byte.isEmpty else { throw ClientError("a peer exited before it was ready") }
            if byte[byte.startIndex] == 0x0A { break }
            line.append(byte)
        }
        let words = String(decoding: line, as: UTF8.self).split(separator: " ")
        guard words.count == 3, words[0] == "ready" else { throw ClientError("a peer printed '\(String(decoding: line, as: UTF8.self))'") }
        address = String(words[2])
        return address!
    }

    func kill() {
        guard process.isRunning else { return }
        Glibc.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    deinit { kill() }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
