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
        let peers = try await PeerProcess.cluster(
            me, count: 3, folder: folder, options: ["--slots", String(slots), "--queue-depth", String(queueDepth)])
        defer { for p in peers { p.kill() } }
        let addresses = try peers.map { try $0.waitReady() }
        let client = try ClientConnection(peer: addresses[1], peerKey: nil, key: nil)
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
            let t0 = ContinuousClock.now
            let submitted = try await client.runFile(path: "empty.yaml", text: text)
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
        await PeerProcess.printPerPeer(addresses)
    }
}

extension ClientConnection {
    /// Submits the workflow file `text` (named `path`) and follows it to its end; returns when the
    /// peer answered "submitted" (the file parsed). Throws if it failed or was refused.
    func runFile(path: String, text: String, timeout: Duration = .seconds(600)) async throws -> ContinuousClock.Instant {
        var submit = Shoal_Wire_V1_SubmitFile()
        submit.path = path
        submit.text = text
        submit.follow = true
        var q = ClientRequest()
        q.submit = submit
        let id = send(q)
        var submitted = ContinuousClock.now
        while true {
            let (reply, _) = try await next(for: id, timeout: timeout)
            if case .submitted? = reply.kind { submitted = ContinuousClock.now }
            if case .finished(let f)? = reply.kind {
                guard f.outcome == .completed else { throw ClientError("\(path) failed: \(f.reason)") }
                return submitted
            }
            if case .error(let e)? = reply.kind { throw ClientError(e.message) }
        }
    }

    /// The peer's status.
    func status() async throws -> Shoal_Wire_V1_PeerStatus {
        var q = ClientRequest()
        q.status = Shoal_Wire_V1_StatusRequest()
        guard case .status(let st)? = try await ask(q).0.kind else { throw ClientError("the peer did not answer with its status") }
        return st
    }

    /// Whether the peer saw `count` members alive within 10 s (its status asked every 100 ms).
    func waitForAlive(_ count: Int) async throws -> Bool {
        for _ in 0..<100 {
            if let st = try? await status(), st.members.filter({ $0.status == .alive }).count == count { return true }
            try await Task.sleep(for: .milliseconds(100))
        }
        return false
    }
}

/// A `shoal peer start` child (in trusted-network mode unless `security` says otherwise), killed
/// by `kill()`.
final class PeerProcess {
    /// `count` peers on loopback (any free ports, data folders under `folder`), the first the
    /// others' seed, once each sees all of them alive (10 s at most).
    static func cluster(_ executable: URL, count: Int, folder: URL, options: [String]) async throws -> [PeerProcess] {
        var peers: [PeerProcess] = []
        for i in 0..<count {
            let seeds = try peers.first.map { ["--seeds", try $0.waitReady()] } ?? []
            let p = try PeerProcess(
                executable, ["--listen", "tcp://127.0.0.1:0", "--data-dir", folder.path + "/peer-\(i)"] + seeds + options)
            _ = try p.waitReady()
            peers.append(p)
        }
        for p in peers {
            let client = try ClientConnection(peer: try p.waitReady(), peerKey: nil, key: nil)
            _ = try await client.waitForAlive(count)
            await client.close()
        }
        return peers
    }

    /// What each peer of a trusted-mode cluster ran and stole, one line each.
    static func printPerPeer(_ addresses: [String]) async {
        var ran: [String] = []
        for a in addresses {
            guard let conn = try? ClientConnection(peer: a, peerKey: nil, key: nil), let st = try? await conn.status() else {
                continue
            }
            var line = "\(a): \(st.tasksRun) run, \(st.stealsMade) steals"
            if st.stealRoundTrips > 0 {
                line += ", steal round trip p50 \(st.stealRoundTripP50Us) µs p99 \(st.stealRoundTripP99Us) µs (\(st.stealRoundTrips) requests)"
            }
            if st.fetches > 0 { line += ", fetch p50 \(st.fetchP50Us) µs p99 \(st.fetchP99Us) µs (\(st.fetches))" }
            ran.append(line)
            await conn.close()
        }
        print("per peer:\n  " + ran.joined(separator: "\n  "))
    }

    let process = Process()
    let out = Pipe()
    var address: String?

    init(_ executable: URL, _ arguments: [String], security: [String] = ["--security", "none"]) throws {
        process.executableURL = executable
        process.arguments = ["peer", "start", "--log-level", "warning"] + security + arguments
        process.standardOutput = out
        process.standardError = ProcessInfo.processInfo.environment["SHOAL_BENCH_PEER_LOGS"] != nil ? FileHandle.standardError : FileHandle.nullDevice
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

/// `shoal bench stencil-peers`: Task Bench's METG for stencil_1d (width = 2 × peers) run across
/// peer processes on loopback as a workflow file of `spin` tasks, beside the same files on the
/// local engine in this process. Efficiency is the kernel's work over makespan × slots, the
/// makespan from the peer's `submitted` (the file parsed) to the end.
struct BenchStencilPeers: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stencil-peers", abstract: "METG(50%) of stencil_1d across peer processes, vs the local engine.")

    @Option(help: "Peer processes.") var peers = 2
    @Option(help: "Task slots per peer (the local engine gets peers × slots workers).") var slots = 1
    @Option(help: "Jobs per slot handed to each peer's workers (its queue-depth).") var queueDepth = 1
    @Option(help: "Steps of the stencil.") var steps = 100
    @Option(help: "Efficiency threshold.") var threshold = 0.5

    func validate() throws {
        guard (1...8).contains(peers), (1...16).contains(slots), (2...10_000).contains(steps) else {
            throw ValidationError("--peers 1...8, --slots 1...16, --steps 2...10000")
        }
        guard threshold > 0 && threshold <= 1 else { throw ValidationError("--threshold must be in (0, 1]") }
    }

    /// A stencil_1d workflow file: step s point x reads points x-1...x+1 of step s-1 (two buffers).
    static func stencil(width: Int, steps: Int, iterations: Int) -> String {
        var text = "name: stencil\ndata:\n"
        for x in 0..<width { text += "  a\(x): \"\(x)\"\n" }
        text += "tasks:\n"
        for s in 0..<steps {
            let (from, to) = s % 2 == 0 ? ("a", "b") : ("b", "a")
            for x in 0..<width {
                let reads = (max(0, x - 1)...min(width - 1, x + 1)).map { "\(from)\($0)" }.joined(separator: ", ")
                text += "  - { name: t\(s)-\(x), task: spin, args: { iterations: \(iterations) }, in: [\(reads)], out: [\(to)\(x)] }\n"
            }
        }
        return text + "outputs: [\((0..<width).map { "\(steps % 2 == 0 ? "a" : "b")\($0)" }.joined(separator: ", "))]\n"
    }

    func run() async throws {
        let nsPerIteration = TaskBench.calibrate()
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("shoal-bench-stencil-\(getpid())")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let me = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        let processes = try await PeerProcess.cluster(
            me, count: peers, folder: folder, options: ["--slots", String(slots), "--queue-depth", String(queueDepth)])
        defer { for p in processes { p.kill() } }
        let client = try ClientConnection(peer: try processes[0].waitReady(), peerKey: nil, key: nil)
        let width = 2 * peers, cores = peers * slots
        print(String(format: "stencil_1d, width %d, %d steps, %d peers × %d slots; kernel %.2f ns per iteration", width, steps, peers, slots, nsPerIteration))
        var metgPeers: Double?, metgLocal: Double?
        var iterations = 1 << 20
        while iterations >= 64 {
            let text = Self.stencil(width: width, steps: steps, iterations: iterations)
            let tasks = width * steps
            let granularity = Double(iterations) * nsPerIteration / 1e9
            var best = Double.infinity
            for _ in 0..<2 {
                let started = try await client.runFile(path: "stencil.yaml", text: text)
                best = min(best, (ContinuousClock.now - started).seconds)
            }
            let file = folder.path + "/stencil.yaml"
            try text.write(toFile: file, atomically: true, encoding: .utf8)
            let options = RunOptions(runtime: RuntimeSettings(workers: cores))
            let runner = WorkflowRunner(
                file: try WorkflowFile.load(path: file), registry: ExampleTasks.registry, options: options,
                workDirectory: folder.appendingPathComponent("local"), outputDirectory: nil)
            var localBest = Double.infinity
            for _ in 0..<2 {
                let t = ContinuousClock.now
                _ = try await runner.run()
                localBest = min(localBest, (ContinuousClock.now - t).seconds)
            }
            let work = Double(tasks) * granularity
            let e = work / (best * Double(cores)), el = work / (localBest * Double(cores))
            print(String(format: "  %8d iterations (%7.1f µs): peers %5.1f%% (%.3f s), local engine %5.1f%% (%.3f s)",
                iterations, granularity * 1e6, e * 100, best, el * 100, localBest))
            if e >= threshold { metgPeers = granularity }
            if el >= threshold { metgLocal = granularity }
            if e < threshold && el < threshold { break }
            iterations /= 2
        }
        func shown(_ g: Double?) -> String { g.map { String(format: "%.1f µs", $0 * 1e6) } ?? "not reached" }
        let ratio = (metgPeers != nil && metgLocal != nil) ? String(format: "; local/peers %.3f", metgLocal! / metgPeers!) : ""
        print("METG(\(Int(threshold * 100))%): peers \(shown(metgPeers)), local engine \(shown(metgLocal))\(ratio)")
        await PeerProcess.printPerPeer(try processes.map { try $0.waitReady() })
    }
}
