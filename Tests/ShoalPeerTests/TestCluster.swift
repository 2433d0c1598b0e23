import Foundation
import ShoalCore
import ShoalPeer
import ShoalTestSupport
import ShoalTransport
import ShoalWire

#if canImport(Glibc)
    import Glibc
#endif

/// Real peer processes on loopback for one test: keys made here, free ports, a config per peer, a
/// client key and the known-peers file; `stop()` (in a `defer`) kills every process it started and
/// removes the folder, whatever the test did.
final class TestCluster: @unchecked Sendable {
    let scratch: ScratchDirectory
    let names: [String]
    var ports: [String: Int] = [:]
    var peers: [String: BackgroundChild] = [:]
    var ids: [String: String] = [:]
    let client: CurveKeyPair
    var stopped = false

    var knownPeers: String { scratch.appending("known-peers").path }
    var clientKey: String { scratch.appending("keys/client.key").path }

    init(_ tag: String, peers names: [String] = ["a", "b", "c"], slots: Int = 2) throws {
        scratch = try ScratchDirectory("cluster-\(tag)")
        self.names = names
        let keys = scratch.appending("keys").path
        client = try CurveKeyPair.generate()
        _ = try client.write(directory: keys, name: "client")
        var known = ""
        var allow = ""
        for n in names {
            let pair = try CurveKeyPair.generate()
            _ = try pair.write(directory: keys, name: "peer-\(n)")
            ports[n] = try Self.freePort()
            known += "\(address(n)) \(pair.publicKey.z85)\n"
            allow += pair.publicKey.z85 + "\n"
        }
        try known.write(toFile: knownPeers, atomically: true, encoding: .utf8)
        try allow.write(toFile: keys + "/peers.allow", atomically: true, encoding: .utf8)
        try (client.publicKey.z85 + "\n").write(toFile: keys + "/clients.allow", atomically: true, encoding: .utf8)
        let seeds = names.prefix(2).map { address($0) }.joined(separator: ", ")
        for n in names {
            let config = """
                listen: \(address(n))
                seeds: [\(seeds)]
                known-peers: known-peers
                data-dir: data/\(n)
                slots: \(slots)
                key: keys/peer-\(n).key
                peers-allow: keys/peers.allow
                clients-allow: keys/clients.allow
                protocol-period-ms: 100
                log-level: info

                """
            try config.write(toFile: configPath(n), atomically: true, encoding: .utf8)
        }
    }

    deinit { stop() }

    func address(_ n: String) -> String { "tcp://127.0.0.1:\(ports[n]!)" }
    func configPath(_ n: String) -> String { scratch.appending("peer-\(n).yaml").path }

    /// Starts every peer and waits for each `ready` line.
    func start() async throws {
        for n in names { try await start(n) }
    }

    /// Starts every peer and waits until each sees all of them alive.
    func startAndWaitForAll() async throws {
        try await start()
        for n in names { _ = try await waitForStatus(n) { Self.aliveCount($0) == self.names.count } }
    }

    /// Starts peer `n` (again, after a kill: same key, same data folder) and waits for `ready`.
    @discardableResult
    func start(_ n: String, extra: [String] = []) async throws -> BackgroundChild {
        try await offThePool { try self.startBlocking(n, extra: extra) }
    }

    private func startBlocking(_ n: String, extra: [String]) throws -> BackgroundChild {
        let child = try BackgroundChild.shoal(["peer", "start", "--config", configPath(n)] + extra)
        peers[n] = child
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            if let line = child.stdoutSoFar.split(separator: "\n").first(where: { $0.hasPrefix("ready ") }) {
                ids[n] = String(line.split(separator: " ")[1])
                return child
            }
            guard child.process.isRunning else { break }
            usleep(20_000)
        }
        throw Failure("peer \(n) did not print ready: \(child.stderrSoFar.suffix(2_000))")
    }

    func kill(_ n: String, _ signal: Int32 = SIGKILL) {
        guard let child = peers[n] else { return }
        Glibc.kill(child.pid, signal)
    }

    /// Kills every peer (SIGKILL) and removes the folder.
    func stop() {
        guard !stopped else { return }
        stopped = true
        for (_, child) in peers where child.process.isRunning {
            Glibc.kill(child.pid, SIGKILL)
            child.process.waitUntilExit()
        }
        scratch.remove()
    }

    /// The logs of every peer (for a failing test's message).
    var logs: String {
        names.map { n in "--- peer \(n)\n" + (peers[n]?.stderrSoFar.suffix(3_000) ?? "") }.joined(separator: "\n")
    }

    /// `shoal ARGS` with this cluster's client key and known-peers.
    func shoal(_ arguments: [String], timeoutSeconds: Double = 60) async throws -> ChildProcess.Result {
        let all = arguments + ["--key", clientKey, "--known-peers", knownPeers]
        let folder = scratch.url
        return try await offThePool { try ChildProcess.shoal(all, timeoutSeconds: timeoutSeconds, currentDirectory: folder) }
    }

    /// Waits for peer `n`'s process to exit.
    func waitForExit(_ n: String, timeoutSeconds: Double = 20) async throws -> ChildProcess.Result {
        let child = UncheckedBox(peers[n]!)
        return try await offThePool { try child.value.wait(timeoutSeconds: timeoutSeconds) }
    }

    /// `shoal submit ...` in the background.
    func submitInBackground(_ file: String, at n: String, outputDir: String) throws -> BackgroundChild {
        try BackgroundChild.shoal(
            ["submit", file, "--peer", address(n), "--output-dir", outputDir, "--key", clientKey, "--known-peers", knownPeers])
    }

    /// `request` to peer `n` with this cluster's client key, from this process; its first reply.
    func ask(_ n: String, _ request: ClientRequest, payloads: [WirePayload] = [], timeout: Duration = .seconds(10))
        async throws -> (ClientReply, [WirePayload])
    {
        let known = try KnownPeers.read(knownPeers)
        let c = try ClientConnection(peer: address(n), peerKey: known.keys[address(n)], key: client)
        defer { Task { await c.close() } }
        return try await c.ask(request, payloads: payloads, timeout: timeout)
    }

    /// A status reply of peer `n`, asked in this process.
    func status(_ n: String) async throws -> Shoal_Wire_V1_PeerStatus {
        var r = ClientRequest()
        r.status = Shoal_Wire_V1_StatusRequest()
        let (reply, _) = try await ask(n, r, timeout: .seconds(5))
        guard case .status(let s)? = reply.kind else { throw Failure("peer \(n) did not answer a status") }
        return s
    }

    /// Waits until `condition` holds of peer `n`'s status (at most `seconds`), asking on one
    /// connection every 100 ms.
    func waitForStatus(_ n: String, seconds: Double = 20, _ condition: (Shoal_Wire_V1_PeerStatus) -> Bool) async throws
        -> Shoal_Wire_V1_PeerStatus
    {
        let known = try KnownPeers.read(knownPeers)
        let c = try ClientConnection(peer: address(n), peerKey: known.keys[address(n)], key: client)
        defer { Task { await c.close() } }
        var r = ClientRequest()
        r.status = Shoal_Wire_V1_StatusRequest()
        let deadline = Date().addingTimeInterval(seconds)
        var last: Shoal_Wire_V1_PeerStatus?
        while true {  // asks once more after the last sleep: this task may wake late
            if let (reply, _) = try? await c.ask(r, timeout: .seconds(2)), case .status(let s)? = reply.kind {
                last = s
                if condition(s) { return s }
            }
            if Date() >= deadline { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw Failure("peer \(n)'s status did not reach the condition in \(seconds) s; last: \(String(describing: last))")
    }

    static func aliveCount(_ s: Shoal_Wire_V1_PeerStatus) -> Int { s.members.filter { $0.status == .alive }.count }

    /// A port nothing listens on now, below Linux's ephemeral range (32768 and up): a port the
    /// kernel hands out for `:0` (another test's transport, a connection) never lands on one of a
    /// cluster's peers, even while a killed peer's port waits for its restart.
    static func freePort() throws -> Int {
        for _ in 0..<1_000 {
            let port = Int.random(in: 20_000..<32_000)
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { throw Failure("socket failed") }
            defer { close(fd) }
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_port = in_port_t(UInt16(port).bigEndian)
            addr.sin_addr.s_addr = inet_addr("127.0.0.1")
            let bound = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            if bound == 0 { return port }
        }
        throw Failure("no free port in 20000..<32000")
    }
}

/// Runs blocking work (waiting for a child process, polling its output) on a thread of its own:
/// on Swift's cooperative pool it would hold one of the few threads every async test shares, and
/// two suites doing so at once stall every other test's timers (a transport test saw its message
/// 30 s late).
func offThePool<T>(_ body: @escaping () throws -> T) async throws -> T {
    let work = UncheckedBox(body)
    let result: UncheckedBox<Result<T, any Error>> = await withCheckedContinuation { c in
        Thread { c.resume(returning: UncheckedBox(Result { try work.value() })) }.start()
    }
    return try result.value.get()
}

/// A value handed to another thread by a test that knows no one else touches it meanwhile.
struct UncheckedBox<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}

struct Failure: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// The package's folder (for Examples/).
enum Repository {
    static var root: URL {
        var url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        while !FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) {
            url = url.deletingLastPathComponent()
        }
        return url
    }
    static func example(_ name: String) -> String { root.appendingPathComponent("Examples/workflows/\(name)").path }
}
