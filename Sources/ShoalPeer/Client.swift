import Foundation
import ShoalCore
import ShoalTransport
import ShoalWire

/// Why a client request did not get its answer.
public struct ClientError: Error, CustomStringConvertible, Sendable {
    public let message: String
    /// The peer answered with an error (bad input: exit 2; otherwise 1).
    public let reply: Shoal_Wire_V1_Error?
    public init(_ message: String, reply: Shoal_Wire_V1_Error? = nil) {
        self.message = message
        self.reply = reply
    }
    public var description: String { message }
}

/// A client's connection to one peer (`shoal submit`, `shoal status`, `shoal kv --peer`): a DEALER
/// through the transport, requests with ids, replies matched to them. Under CurveZMQ it needs the
/// peer's public key before the first byte, and its own key must be on the peer's clients (or
/// peers) allow-list; a refused key is reported as such ("key not accepted by tcp://…").
public actor ClientConnection {
    public nonisolated let address: String
    let transport: Transport
    let remote: Remote
    var buffered: [UInt64: [(ClientReply, [WirePayload])]] = [:]
    var nextID: UInt64 = 0
    var problem: String?

    /// `key` is this client's pair (nil: trusted-network mode, no CURVE); `peerKey` the peer's.
    public init(peer address: String, peerKey: CurveKey?, key: CurveKeyPair?) throws {
        self.address = address
        let security: TransportSecurity = key.map { .curve($0) } ?? .none
        transport = try Transport(listen: nil, security: security)
        remote = Remote(endpoint: address, serverKey: key == nil ? nil : peerKey)
        if key != nil && peerKey == nil {
            throw ClientError("no public key is known for \(address): give --peer-key or list it in known-peers")
        }
    }

    deinit { transport.shutdown() }

    /// Sends `request` (its id is set here) and returns the id its replies carry.
    public func send(_ request: ClientRequest, payloads: [WirePayload] = []) -> UInt64 {
        nextID += 1
        var request = request
        request.requestID = nextID
        transport.send(Wire.encode(WireMessage(body: .request(request), payloads: payloads)), to: remote)
        return nextID
    }

    /// The next reply to request `id`, waiting at most `timeout`.
    public func next(for id: UInt64, timeout: Duration) async throws(ClientError) -> (ClientReply, [WirePayload]) {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while true {
            if var queue = buffered[id], !queue.isEmpty {
                let first = queue.removeFirst()
                buffered[id] = queue
                return first
            }
            if let problem { throw ClientError(problem) }
            let events = transport.poll()
            if events.isEmpty {
                guard clock.now < deadline else {
                    throw ClientError("no answer from \(address) within \(timeout) (is a peer listening there?)")
                }
                try? await Task.sleep(for: .microseconds(500))
                continue
            }
            for event in events { take(event) }
        }
    }

    /// A request and its first reply; an error reply throws.
    public func ask(_ request: ClientRequest, payloads: [WirePayload] = [], timeout: Duration = .seconds(10))
        async throws(ClientError) -> (ClientReply, [WirePayload])
    {
        let id = send(request, payloads: payloads)
        let (reply, frames) = try await next(for: id, timeout: timeout)
        if case .error(let e)? = reply.kind { throw ClientError(e.message, reply: e) }
        return (reply, frames)
    }

    private func take(_ event: TransportEvent) {
        switch event {
        case .message(let inbound):
            guard let message = try? Wire.decode(inbound.frames), case .reply(let reply) = message.body else { return }
            buffered[reply.requestID, default: []].append((reply, message.payloads))
        case .keyRefused(let r): problem = "key not accepted by \(r.endpoint) (it is on neither of its allow-lists)"
        case .handshakeFailed(let r, let reason): problem = "the handshake with \(r.endpoint) failed: \(reason)"
        case .connected, .disconnected: break
        }
    }

    public func close() { transport.shutdown() }
}
