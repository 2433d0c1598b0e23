import ArgumentParser
import CZMQ
import Foundation
import ShoalExamples
import ShoalTransport

/// `shoal bench transport`: how fast large values cross between two transports on loopback, with
/// CurveZMQ and in trusted-network mode, beside bare libzmq sockets moving the same frames in the
/// same run (a PUSH/PULL pair, zero-copy sends, no ZAP, no IO thread of ours): the ceiling.
struct BenchTransport: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "transport",
        abstract: "GB/s of large values between two transports on loopback (CURVE and plain) vs bare libzmq.")

    @Option(help: "Bytes of one value (default 64 MiB).") var valueBytes = 64 << 20
    @Option(help: "Bytes of one frame: a value travels as frames of at most this size (default 4 MiB).")
    var chunkBytes = 4 << 20
    @Option(help: "Values sent per run.") var values = 8
    @Option(help: "Runs per measurement (the best is printed beside the median).") var runs = 3

    static let maxValueBytes = 1 << 30

    func validate() throws {
        guard valueBytes >= 1 && valueBytes <= Self.maxValueBytes else {
            throw refuse("--value-bytes must be 1 to \(Self.maxValueBytes), got \(valueBytes)")
        }
        guard chunkBytes >= 1 && chunkBytes <= valueBytes else {
            throw refuse("--chunk-bytes must be 1 to --value-bytes (\(valueBytes)), got \(chunkBytes)")
        }
        guard valueBytes / chunkBytes <= 4_096 else {
            throw refuse("a value may have at most 4,096 frames: --value-bytes / --chunk-bytes is \(valueBytes / chunkBytes)")
        }
        guard values >= 1 && values <= 1_000 else { throw refuse("--values must be 1 to 1000, got \(values)") }
        guard runs >= 1 && runs <= 100 else { throw refuse("--runs must be 1 to 100, got \(runs)") }
    }

    func run() async throws {
        let frames = frames()
        let total = Double(valueBytes) * Double(values)
        print(
            "\(values) values of \(valueBytes) bytes in frames of \(chunkBytes), one way over tcp://127.0.0.1; "
                + "best and median of \(runs) runs")
        for curve in [true, false] {
            var ours: [Double] = []
            var bare: [Double] = []
            for _ in 0..<runs {
                ours.append(total / (try await transportSeconds(frames, curve: curve)) / 1e9)
                bare.append(total / (try bareSeconds(frames, curve: curve)) / 1e9)
            }
            let name = curve ? "CURVE" : "plain (security: none)"
            let best = ours.max()!
            let median = ours.sorted()[ours.count / 2]
            let bareBest = bare.max()!
            let bareMedian = bare.sorted()[bare.count / 2]
            print(
                "\(name): transport best \(fmt(best)) GB/s, median \(fmt(median)); bare libzmq best \(fmt(bareBest)), "
                    + "median \(fmt(bareMedian)); ratio of the medians \(fmt(median / bareMedian))")
        }
    }

    private func fmt(_ x: Double) -> String { String(format: "%.2f", x) }

    /// One value of `valueBytes` pseudo-random bytes, in frames of at most `chunkBytes`.
    func frames() -> [Data] {
        let value = Data(ExampleTasks.pseudoRandomBytes(count: valueBytes, seed: 0))
        return stride(from: 0, to: valueBytes, by: chunkBytes).map {
            value[$0..<min($0 + chunkBytes, valueBytes)]
        }
    }

    /// Seconds for `values` messages of `frames` from one transport to another (after a first
    /// small message has set the connection up).
    func transportSeconds(_ frames: [Data], curve: Bool) async throws -> Double {
        var settings = TransportSettings()
        settings.maxFrameBytes = Int64(chunkBytes)
        settings.maxQueuedSendBytes = max(settings.maxQueuedSendBytes, valueBytes * values)
        let serverPair = try CurveKeyPair.generate()
        let clientPair = try CurveKeyPair.generate()
        let receiver = try Transport(
            listen: "tcp://127.0.0.1:0",
            security: curve ? .curve(serverPair, peers: [clientPair.publicKey]) : .none, settings: settings)
        let sender = try Transport(
            listen: "tcp://127.0.0.1:0", security: curve ? .curve(clientPair, peers: [serverPair.publicKey]) : .none,
            settings: settings)
        defer {
            sender.shutdown()
            receiver.shutdown()
        }
        let remote = Remote(endpoint: receiver.endpoint!, serverKey: curve ? serverPair.publicKey : nil)
        sender.send([Data("hello".utf8)], to: remote)
        _ = try await count(receiver, messages: 1)
        let start = DispatchTime.now().uptimeNanoseconds
        for _ in 0..<values { sender.send(frames, to: remote) }
        let received = try await count(receiver, messages: values)
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        guard received == valueBytes * values else {
            throw CommandFailure("the transport delivered \(received) bytes, expected \(valueBytes * values)")
        }
        return seconds
    }

    /// Receives `messages` messages; returns their bytes. Fails after 60 s without them.
    func count(_ t: Transport, messages: Int) async throws -> Int {
        var got = 0
        var bytes = 0
        let watchdog = Task {
            try await Task.sleep(for: .seconds(60))
            t.shutdown()
        }
        defer { watchdog.cancel() }
        while got < messages {
            let batch = await t.receive()
            if batch.isEmpty { throw CommandFailure("no message within 60 s") }
            for case .message(let m) in batch {
                got += 1
                bytes += m.frames.reduce(0) { $0 + $1.count }
            }
        }
        return bytes
    }

    /// The same messages over a bare PUSH/PULL pair: zero-copy sends from one buffer, a thread
    /// receiving into libzmq's own messages.
    func bareSeconds(_ frames: [Data], curve: Bool) throws -> Double {
        // Two contexts, as two transports have: each has its own libzmq IO thread, so encryption
        // and decryption run on different cores.
        guard let pullContext = zmq_ctx_new(), let pushContext = zmq_ctx_new() else {
            throw CommandFailure("zmq_ctx_new failed")
        }
        defer {
            zmq_ctx_term(pullContext)
            zmq_ctx_term(pushContext)
        }
        let pull = zmq_socket(pullContext, ZMQ_PULL)!
        let push = zmq_socket(pushContext, ZMQ_PUSH)!
        var zero: Int32 = 0
        zmq_setsockopt(pull, ZMQ_LINGER, &zero, 4)
        zmq_setsockopt(push, ZMQ_LINGER, &zero, 4)
        if curve {
            let server = try CurveKeyPair.generate()
            let client = try CurveKeyPair.generate()
            var one: Int32 = 1
            zmq_setsockopt(pull, ZMQ_CURVE_SERVER, &one, 4)
            _ = server.secretKey.bytes.withUnsafeBytes { zmq_setsockopt(pull, ZMQ_CURVE_SECRETKEY, $0.baseAddress, 32) }
            _ = server.publicKey.bytes.withUnsafeBytes { zmq_setsockopt(push, ZMQ_CURVE_SERVERKEY, $0.baseAddress, 32) }
            _ = client.publicKey.bytes.withUnsafeBytes { zmq_setsockopt(push, ZMQ_CURVE_PUBLICKEY, $0.baseAddress, 32) }
            _ = client.secretKey.bytes.withUnsafeBytes { zmq_setsockopt(push, ZMQ_CURVE_SECRETKEY, $0.baseAddress, 32) }
        }
        guard zmq_bind(pull, "tcp://127.0.0.1:0") == 0 else { throw CommandFailure("bind failed") }
        var endpoint = [CChar](repeating: 0, count: 256)
        var size = endpoint.count
        zmq_getsockopt(pull, ZMQ_LAST_ENDPOINT, &endpoint, &size)
        let address = String(decoding: endpoint.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        zmq_connect(push, address)

        let expected = valueBytes * values
        let done = DispatchSemaphore(value: 0)
        let ready = DispatchSemaphore(value: 0)
        let pullBox = RawSocket(pull)
        Thread {
            let msg = UnsafeMutablePointer<zmq_msg_t>.allocate(capacity: 1)
            defer { msg.deallocate() }
            zmq_msg_init(msg)
            zmq_msg_recv(msg, pullBox.handle, 0)  // the first small message: the link is up
            ready.signal()
            var bytes = 0
            while bytes < expected {
                if zmq_msg_recv(msg, pullBox.handle, 0) >= 0 { bytes += zmq_msg_size(msg) }
            }
            zmq_msg_close(msg)
            done.signal()
        }.start()
        _ = "hello".withCString { zmq_send(push, $0, 5, 0) }
        ready.wait()
        let start = DispatchTime.now().uptimeNanoseconds
        for _ in 0..<values {
            for (i, frame) in frames.enumerated() {
                let msg = UnsafeMutablePointer<zmq_msg_t>.allocate(capacity: 1)
                frame.withUnsafeBytes { raw in
                    // The frames outlive the run, so libzmq may point into them without a free.
                    _ = zmq_msg_init_data(msg, UnsafeMutableRawPointer(mutating: raw.baseAddress), raw.count, nil, nil)
                }
                zmq_msg_send(msg, push, i + 1 < frames.count ? ZMQ_SNDMORE : 0)
                msg.deallocate()
            }
        }
        done.wait()
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        zmq_close(push)
        zmq_close(pull)
        return seconds
    }
}

/// A socket handed to the one thread that uses it from then on.
private struct RawSocket: @unchecked Sendable {
    let handle: UnsafeMutableRawPointer
    init(_ handle: UnsafeMutableRawPointer) { self.handle = handle }
}
