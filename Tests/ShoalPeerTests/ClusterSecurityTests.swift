import Foundation
import ShoalCore
import ShoalPeer
import ShoalTestSupport
import ShoalTransport
import ShoalWire
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Who may talk to a real peer, what junk does to it, and persistent objects across the loss of a
/// peer.
@Suite("Real peers: keys, junk, objects", .serialized)
struct ClusterSecurityTests {
    @Test func unknownKeysCanNeitherJoinNorSubmitNorRead() async throws {
        let cluster = try TestCluster("keys")
        defer { cluster.stop() }
        try await cluster.start()
        _ = try await cluster.waitForStatus("a") { TestCluster.aliveCount($0) == 3 }

        // A client whose key is on no allow-list is told so, and gets nothing.
        let stranger = try CurveKeyPair.generate()
        let keys = cluster.scratch.appending("keys").path
        _ = try stranger.write(directory: keys, name: "stranger")
        let status = try await offThePool { try ChildProcess.shoal(
            ["status", "--peer", cluster.address("a"), "--key", keys + "/stranger.key", "--known-peers", cluster.knownPeers]) }
        #expect(status.status == 1)
        #expect(status.stderr.contains("key not accepted by \(cluster.address("a"))"), "\(status.stderr)")
        let submit = try await offThePool { try ChildProcess.shoal(
            [
                "submit", Repository.example("shout-twice.yaml"), "--peer", cluster.address("b"), "--key",
                keys + "/stranger.key", "--known-peers", cluster.knownPeers, "--output-dir", cluster.scratch.appending("x").path,
            ], timeoutSeconds: 60) }
        #expect(submit.status == 1)
        #expect(submit.stderr.contains("key not accepted"), "\(submit.stderr)")

        // A plain connection (no CURVE) gets no answer at all.
        let plain = try ClientConnection(peer: cluster.address("a"), peerKey: nil, key: nil)
        var request = ClientRequest()
        request.status = Shoal_Wire_V1_StatusRequest()
        await #expect(throws: ClientError.self) { _ = try await plain.ask(request, timeout: .seconds(2)) }
        await plain.close()

        // A peer with an unknown key, and one with the client's key, cannot join.
        for (name, key) in [("stranger", keys + "/stranger.key"), ("client", cluster.clientKey)] {
            let port = try TestCluster.freePort()
            let config = cluster.scratch.appending("peer-\(name).yaml").path
            try """
            listen: tcp://127.0.0.1:\(port)
            seeds: [\(cluster.address("a"))]
            known-peers: known-peers
            data-dir: data/\(name)
            key: \(key)
            peers-allow: keys/peers.allow
            protocol-period-ms: 100

            """.write(toFile: config, atomically: true, encoding: .utf8)
            let intruder = try BackgroundChild.shoal(["peer", "start", "--config", config])
            defer {
                kill(intruder.pid, SIGKILL)
                intruder.process.waitUntilExit()
            }
            try await Task.sleep(for: .seconds(2))
            for n in cluster.names {
                let s = try await cluster.status(n)
                #expect(s.members.count == 3, "peer \(n) let the \(name) key join: \(s.members.map(\.address))")
            }
        }
        let a = try await cluster.status("a")
        #expect(a.keysRejected > 0)
        #expect(a.metrics.contains("shoal_messages_refused_role_total"))
    }

    @Test func junkOnAPeersPortDoesNotCrashItAndIsCounted() async throws {
        let cluster = try TestCluster("junk")
        defer { cluster.stop() }
        try await cluster.start()
        _ = try await cluster.waitForStatus("b") { TestCluster.aliveCount($0) == 3 }
        let keys = cluster.scratch.appending("keys").path
        let pair = try CurveKeyPair.read(secretKeyFile: keys + "/peer-a.key")
        let known = try KnownPeers.read(cluster.knownPeers)
        let b = Remote(endpoint: cluster.address("b"), serverKey: known.keys[cluster.address("b")])
        // An authenticated peer's connection sending junk: random bytes, truncated and corrupted
        // messages, another wire version, a header claiming payloads that are not there.
        let sender = try Transport(listen: nil, security: .curve(pair))
        defer { sender.shutdown() }
        var generator = SeededGenerator(seed: 77)
        var sent = 0
        for _ in 0..<200 {
            let n = Int(generator.next() % 300)
            sender.send([Data((0..<n).map { _ in UInt8(truncatingIfNeeded: generator.next()) })], to: b)
            sent += 1
        }
        var ping = WireMessage(
            body: .peer(.membership(.ping(sequence: 1, updates: [])), contacts: []), payloads: [WirePayload([1, 2, 3])],
            sender: PeerIdentity.id(key: pair.publicKey))
        let frames = Wire.encode(ping)
        for cut in stride(from: 1, to: frames[0].count, by: 3) {
            sender.send([frames[0].prefix(cut)], to: b)  // truncated header, and payload frames missing
            sent += 1
        }
        ping.version = 99
        sender.send(Wire.encode(ping), to: b)
        sent += 1
        // A raw TCP connection writing garbage (it never completes a handshake).
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(cluster.ports["b"]!).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        #expect(connected == 0)
        let garbage = (0..<4_096).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
        _ = garbage.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
        let s = try await cluster.waitForStatus("b", seconds: 20) { $0.messagesDropped >= UInt64(sent) - 5 }
        #expect(s.messagesDropped >= UInt64(sent) - 5, "sent \(sent) junk messages; \(s.metrics)")
        #expect(Self.metric("shoal_frames_dropped_malformed_total", in: s) > 100, "\(s.metrics)")
        #expect(Self.metric("shoal_frames_dropped_version_total", in: s) >= 1, "\(s.metrics)")
        #expect(Self.metric("shoal_unauthenticated_connections_total", in: s) >= 1, "\(s.metrics)")
        // An oversized frame (over ZMQ_MAXMSGSIZE): libzmq ends the connection, and it is counted.
        let before = Self.metric("shoal_disconnects_total", in: s)
        let big = try Transport(listen: nil, security: .curve(pair))
        defer { big.shutdown() }
        big.send([Data(count: 65 << 20)], to: b)
        _ = try await cluster.waitForStatus("b", seconds: 20) { Self.metric("shoal_disconnects_total", in: $0) > before }
        // Still a member, still serving.
        _ = try await cluster.waitForStatus("a") { TestCluster.aliveCount($0) == 3 }
        #expect(cluster.peers["b"]!.process.isRunning)
    }

    /// A counter's value in a status reply's Prometheus text.
    static func metric(_ name: String, in s: Shoal_Wire_V1_PeerStatus) -> UInt64 {
        for line in s.metrics.split(separator: "\n") where line.hasPrefix(name + " ") {
            return UInt64(line.split(separator: " ")[1]) ?? 0
        }
        return 0
    }

    @Test func aPersistentObjectWrittenWithTwoReplicasSurvivesTheLossOfOnePeer() async throws {
        let cluster = try TestCluster("objects")
        defer { cluster.stop() }
        for n in cluster.names {
            let path = cluster.configPath(n)
            try (try String(contentsOfFile: path, encoding: .utf8) + "replicas: 2\n").write(
                toFile: path, atomically: true, encoding: .utf8)
        }
        try await cluster.startAndWaitForAll()
        let bytes = Array("the spikes of the second session".utf8)
        // Through the CLI: `shoal kv put --peer` acknowledges once both replicas have it on disk.
        let put = try await cluster.shoal(["kv", "put", "spikes", "the spikes of the second session", "--peer", cluster.address("a")])
        #expect(put.status == 0, "\(put.stderr)")
        #expect(put.stdout.contains("stored 'spikes' (32 bytes)"), "\(put.stdout)")
        let got = try await cluster.shoal(["kv", "get", "spikes", "--peer", cluster.address("c")])
        #expect(got.status == 0 && got.stdout == "the spikes of the second session", "\(got.stderr)")
        let missing = try await cluster.shoal(["kv", "get", "nothing", "--peer", cluster.address("c")])
        #expect(missing.status == 1 && missing.stderr.contains("no object 'nothing'"), "\(missing.stderr)")
        // Lose one peer (whichever it is, one of the two replicas survives), then read elsewhere.
        for lost in ["b", "c"] {
            let reader = lost == "b" ? "c" : "b"
            cluster.kill(lost)
            _ = try await cluster.waitForExit(lost, timeoutSeconds: 10)
            var get = ClientRequest()
            get.get.name = "spikes"
            let (value, frames) = try await cluster.ask(reader, get, timeout: .seconds(20))
            guard case .value(let v)? = value.kind else { throw Failure("the get was answered \(value)") }
            #expect(v.found, "the object was lost with peer \(lost)")
            #expect(frames.first?.bytes == bytes)
            try await cluster.start(lost)  // back, with its shard: it serves its replicas again
            for n in cluster.names { _ = try await cluster.waitForStatus(n, seconds: 30) { TestCluster.aliveCount($0) == 3 } }
        }
    }
}
