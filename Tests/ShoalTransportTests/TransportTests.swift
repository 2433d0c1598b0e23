import Foundation
import Glibc
import Testing

@testable import ShoalTransport

// Transports on loopback in one process (each with its own libzmq context and ZAP handler), on
// ports the kernel picks. Every wait is bounded; a transport shuts down when released. The
// bounds are 30 s, though a message takes milliseconds: under `swift test` these tests share two
// cores with suites that hold Swift's cooperative pool for seconds, and a poll that cannot run
// must not count as a lost message (each wait ends as soon as what it waits for is there).

/// Collects events from `t` until `stop` says so or `seconds` pass; returns all it saw.
func collect(
    _ t: Transport, seconds: Double = 30, until stop: ([TransportEvent]) -> Bool
) async -> [TransportEvent] {
    var seen: [TransportEvent] = []
    let deadline = Date().addingTimeInterval(seconds)
    // Looks once more after every sleep, the last included: a test task may wake long after its
    // sleep (other suites' synchronous tests hold the cooperative pool's threads), and what
    // arrived meanwhile still counts.
    while true {
        seen += t.poll()
        if stop(seen) || Date() >= deadline { return seen }
        try? await Task.sleep(for: .milliseconds(5))
    }
}

func messages(_ events: [TransportEvent]) -> [Inbound] {
    events.compactMap { if case .message(let m) = $0 { m } else { nil } }
}

func bytes(_ s: String) -> Data { Data(s.utf8) }

/// Waits until `t`'s counters satisfy `ok` (they are added once per turn of its IO loop).
func waitForStats(_ t: Transport, seconds: Double = 30, _ ok: (TransportStats) -> Bool) async -> TransportStats {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline && !ok(t.stats) { try? await Task.sleep(for: .milliseconds(5)) }
    return t.stats
}

struct Cluster {
    let a: CurveKeyPair
    let b: CurveKeyPair
    let client: CurveKeyPair
    let stranger: CurveKeyPair
    init() throws {
        a = try .generate()
        b = try .generate()
        client = try .generate()
        stranger = try .generate()
    }
    func peer(_ pair: CurveKeyPair, settings: TransportSettings = TransportSettings()) throws -> Transport {
        try Transport(
            listen: "tcp://127.0.0.1:0",
            security: .curve(pair, peers: [a.publicKey, b.publicKey], clients: [client.publicKey]), settings: settings)
    }
}

@Suite struct CurveKeyTests {
    @Test func keysRoundTripThroughZ85AndFiles() throws {
        let pair = try CurveKeyPair.generate()
        #expect(pair.publicKey.z85.count == 40)
        #expect(CurveKey(z85: pair.publicKey.z85) == pair.publicKey)
        #expect(CurveKeyPair(secret: pair.secretKey)?.publicKey == pair.publicKey)
        #expect(CurveKey(z85: "too short") == nil)

        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("shoal-keys-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let paths = try pair.write(directory: dir, name: "alpha")
        let mode = try FileManager.default.attributesOfItem(atPath: paths.secret)[.posixPermissions] as? NSNumber
        #expect(mode?.intValue == 0o600)
        #expect(try CurveKeyPair.read(secretKeyFile: paths.secret).publicKey == pair.publicKey)
        #expect(try CurveKey.read(file: paths.public) == pair.publicKey)
        #expect(try CurveKey.readAllowList(dir) == [pair.publicKey])
        // Never overwritten; a secret others can read is refused.
        #expect(throws: KeyFileError.self) { _ = try pair.write(directory: dir, name: "alpha") }
        chmod(paths.secret, 0o644)
        let e = #expect(throws: KeyFileError.self) { _ = try CurveKeyPair.read(secretKeyFile: paths.secret) }
        #expect(e?.reason.contains("readable by others") == true)
    }

    @Test func allowListFileNamesTheBadLine() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("allow-\(UUID())").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        let key = try CurveKeyPair.generate().publicKey
        try "# peers\n\(key.z85)\n\nnot a key\n".write(toFile: path, atomically: true, encoding: .utf8)
        let e = #expect(throws: KeyFileError.self) { _ = try CurveKey.readAllowList(path) }
        #expect(e?.path == "\(path):4")
    }

    @Test func routingIdsAreTiedToKeys() throws {
        let key = try CurveKeyPair.generate().publicKey
        let other = try CurveKeyPair.generate().publicKey
        let id = Data([0x01] + key.bytes)
        #expect(IOLoop.routingID(id, belongsTo: key))
        #expect(IOLoop.routingID(id + Data(repeating: 7, count: 8), belongsTo: key))
        #expect(!IOLoop.routingID(id, belongsTo: other))
        #expect(!IOLoop.routingID(Data([0x02] + key.bytes), belongsTo: key))
        #expect(!IOLoop.routingID(id + Data(repeating: 7, count: 17), belongsTo: key))
        let user = IOLoop.userID(for: key, role: .client)
        #expect(IOLoop.parseUserID(user)?.0 == key)
        #expect(IOLoop.parseUserID(user)?.1 == .client)
        #expect(IOLoop.parseUserID("X" + key.z85) == nil)
        #expect(IOLoop.parseUserID(nil) == nil)
    }
}

@Suite(.serialized) struct TransportTests {
    @Test func peersExchangeMessagesUnderCurveWithTheirKeysAttached() async throws {
        let c = try Cluster()
        let a = try c.peer(c.a)
        let b = try c.peer(c.b)
        let big = Data((0..<(3 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31) })
        #expect(b.send([bytes("hello"), big], to: Remote(endpoint: a.endpoint!, serverKey: c.a.publicKey)))
        let events = await collect(a) { !messages($0).isEmpty }
        let got = messages(events)
        #expect(got.count == 1)
        #expect(got.first?.frames == [bytes("hello"), big])
        guard case .connection(let rid, let key, let role)? = got.first?.origin else {
            // What each side saw, for a failure under load.
            Issue.record("no message from b; a saw \(events), a's counters \(a.stats); b saw \(b.poll()), b's counters \(b.stats)")
            return
        }
        #expect(key == c.b.publicKey)
        #expect(role == .peer)
        #expect(rid == b.routingID)
        let stats = await waitForStats(a) { $0.messagesReceived == 1 }
        #expect(stats.bytesReceived == UInt64(5 + big.count))
        #expect(stats.rejectedKeys == 0 && stats.refusedIdentity == 0)
    }

    @Test func aClientIsTaggedAndGetsItsReplyOnTheSameConnection() async throws {
        let c = try Cluster()
        let a = try c.peer(c.a)
        let client = try Transport(listen: nil, security: .curve(c.client))
        let remote = Remote(endpoint: a.endpoint!, serverKey: c.a.publicKey)
        client.send([bytes("status?")], to: remote)
        let request = messages(await collect(a) { !messages($0).isEmpty }).first
        guard case .connection(let rid, let key, let role)? = request?.origin else {
            Issue.record("the request did not arrive")
            return
        }
        #expect(role == .client)
        #expect(key == c.client.publicKey)
        #expect(a.reply([bytes("all well")], to: rid))
        let events = await collect(client) { !messages($0).isEmpty }
        let reply = messages(events).first
        #expect(reply?.frames == [bytes("all well")])
        #expect(reply?.origin == .remote(remote))
        #expect(events.contains { if case .connected(remote) = $0 { true } else { false } })
        // A reply to a connection that never existed is dropped and counted.
        a.reply([bytes("lost")], to: Data([0x01] + c.stranger.publicKey.bytes))
        #expect(await waitForStats(a) { $0.sendsDropped == 1 }.sendsDropped == 1)
    }

    @Test func anUnknownKeyIsToldItIsRefusedAndDeliversNothing() async throws {
        let c = try Cluster()
        let a = try c.peer(c.a)
        let stranger = try Transport(listen: nil, security: .curve(c.stranger))
        let remote = Remote(endpoint: a.endpoint!, serverKey: c.a.publicKey)
        stranger.send([bytes("let me in")], to: remote)
        let events = await collect(stranger) { e in e.contains { if case .keyRefused = $0 { true } else { false } } }
        #expect(events.contains { if case .keyRefused(remote) = $0 { true } else { false } })
        #expect(await waitForStats(a) { $0.rejectedKeys >= 1 }.rejectedKeys >= 1)
        try? await Task.sleep(for: .milliseconds(100))
        #expect(messages(a.poll()).isEmpty)
    }

    @Test func aWrongServerKeyOrAPlainConnectionGetsNothingThrough() async throws {
        let c = try Cluster()
        let a = try c.peer(c.a)
        // The client expects another server key: the handshake fails, nothing is sent.
        let fooled = try Transport(listen: nil, security: .curve(c.client))
        let wrong = Remote(endpoint: a.endpoint!, serverKey: c.b.publicKey)
        fooled.send([bytes("secret")], to: wrong)
        let events = await collect(fooled) { e in
            e.contains { if case .handshakeFailed = $0 { true } else { false } }
        }
        #expect(events.contains { if case .handshakeFailed(wrong, _) = $0 { true } else { false } })
        // A trusted-network (plain) connection to a CURVE port.
        let plain = try Transport(listen: nil, security: .none)
        plain.send([bytes("plain")], to: Remote(endpoint: a.endpoint!, serverKey: nil))
        let stats = await waitForStats(a) { $0.failedHandshakes >= 2 }
        #expect(stats.failedHandshakes >= 2)
        try? await Task.sleep(for: .milliseconds(100))
        #expect(messages(a.poll()).isEmpty)
        #expect(stats.messagesReceived == 0)
    }

    @Test func randomBytesAndOversizedFramesAreCountedAndAGoodClientStillGetsThrough() async throws {
        let c = try Cluster()
        var small = TransportSettings()
        small.maxFrameBytes = 64 << 10
        let a = try c.peer(c.a, settings: small)
        let port = UInt16(a.endpoint!.split(separator: ":").last!)!
        // Raw TCP garbage, ten connections.
        for round in 0..<10 {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = port.bigEndian
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            #expect(connected == 0)
            var junk = [UInt8](repeating: 0, count: 512)
            var g = UInt64(round + 1)
            for i in junk.indices {
                g = g &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                junk[i] = UInt8(truncatingIfNeeded: g >> 33)
            }
            _ = junk.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            close(fd)
        }
        let junk = await waitForStats(a) { $0.connectionsAccepted >= 10 && $0.disconnects >= 10 }
        #expect(junk.connectionsAccepted >= 10)
        #expect(junk.handshakesSucceeded == 0)
        #expect(junk.unauthenticatedConnections >= 10)
        #expect(junk.messagesReceived == 0)
        // A client whose frame is larger than the port accepts: its connection is cut after a
        // good handshake, and the frame never arrives.
        let big = try Transport(listen: nil, security: .curve(c.client))
        let remote = Remote(endpoint: a.endpoint!, serverKey: c.a.publicKey)
        big.send([Data(count: 256 << 10)], to: remote)
        let stats = await waitForStats(a) { $0.handshakesSucceeded >= 1 && $0.disconnects >= junk.disconnects + 1 }
        #expect(stats.handshakesSucceeded >= 1)
        #expect(stats.disconnects >= junk.disconnects + 1)
        #expect(stats.messagesReceived == 0)
        big.shutdown()
        // The port still serves a good client, and a frame of exactly maxFrameBytes is not too
        // large (libzmq checks the size with CURVE's own bytes added).
        let good = try Transport(listen: nil, security: .curve(c.client))
        let largest = Data(repeating: 0xA5, count: Int(small.maxFrameBytes))
        good.send([bytes("still there?"), largest], to: remote)
        let got = messages(await collect(a) { !messages($0).isEmpty })
        #expect(got.map(\.frames) == [[bytes("still there?"), largest]])
    }

    @Test func trustedNetworkModeNeedsNoKeys() async throws {
        let a = try Transport(listen: "tcp://127.0.0.1:0", security: .none)
        let b = try Transport(listen: nil, security: .none)
        b.send([bytes("fast")], to: Remote(endpoint: a.endpoint!, serverKey: nil))
        let got = messages(await collect(a) { !messages($0).isEmpty })
        #expect(got.first?.frames == [bytes("fast")])
        guard case .connection(_, let key, let role)? = got.first?.origin else {
            Issue.record("nothing arrived")
            return
        }
        #expect(key == nil && role == .peer)
    }

    @Test func aPortInUseIsAClearError() throws {
        let a = try Transport(listen: "tcp://127.0.0.1:0", security: .none)
        let e = #expect(throws: TransportError.self) {
            _ = try Transport(listen: a.endpoint!, security: .none)
        }
        #expect(e?.message.contains("cannot listen on \(a.endpoint!)") == true)
    }

    @Test func messagesToAnUnreachablePeerAreBoundedAndDropped() async throws {
        var s = TransportSettings()
        s.maxPendingPerRemote = 4
        let t = try Transport(listen: nil, security: .none, settings: s)
        // Nothing listens on port 1: the connection never comes up.
        for i in 0..<10 { t.send([bytes("m\(i)")], to: Remote(endpoint: "tcp://127.0.0.1:1", serverKey: nil)) }
        #expect(await waitForStats(t) { $0.sendsDropped == 6 }.sendsDropped == 6)
        // A refused queue: a transport that is shut down takes nothing.
        t.shutdown()
        #expect(!t.send([bytes("late")], to: Remote(endpoint: "tcp://127.0.0.1:1", serverKey: nil)))
        #expect(t.stats.sendsRefused == 1)
        #expect(await t.receive().isEmpty)
    }

    @Test func receiveWaitsForABatchAndShutdownWakesIt() async throws {
        let c = try Cluster()
        let a = try c.peer(c.a)
        let b = try c.peer(c.b)
        let remote = Remote(endpoint: a.endpoint!, serverKey: c.a.publicKey)
        for i in 0..<100 { b.send([bytes("n\(i)")], to: remote) }
        // Bounded: a watchdog shuts `a` down after 30 s, which ends `receive` with an empty batch.
        let watchdog = Task {
            try await Task.sleep(for: .seconds(30))
            a.shutdown()
        }
        defer { watchdog.cancel() }
        var got: [Inbound] = []
        while got.count < 100 {
            let batch = await a.receive()
            if batch.isEmpty { break }
            got += messages(batch)
        }
        #expect(got.map { String(decoding: $0.frames[0], as: UTF8.self) } == (0..<100).map { "n\($0)" })
        let waiting = Task { await a.receive() }
        try? await Task.sleep(for: .milliseconds(50))
        a.shutdown()
        #expect(await waiting.value.isEmpty)
    }
}
