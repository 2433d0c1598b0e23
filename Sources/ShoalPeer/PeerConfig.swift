import Foundation
import Shoal
import ShoalTransport
import Yams

/// How a peer is started (`shoal peer start --config FILE`): the file, then flags, then `SHOAL_*`
/// environment variables, each overriding the one before. Paths in the file are relative to the
/// file's folder; paths in flags and variables to the working directory.
///
/// ```yaml
/// listen: tcp://0.0.0.0:7101        # the one port: everything this peer receives
/// advertise: tcp://10.0.0.5:7101    # the address others reach it at (default: listen)
/// seeds: [tcp://10.0.0.6:7101]      # peers to join through (none: start a cluster)
/// known-peers: known-peers          # "ADDRESS KEY" lines: the public keys of the seeds
/// data-dir: /var/lib/shoal/a        # its shard (LMDB)
/// slots: 8                          # tasks at once (default: the cores)
/// key: keys/peer-a.key              # its secret key (peer-a.pub beside it)
/// peers-allow: keys/peers.allow     # keys that may join, steal and move data
/// clients-allow: keys/clients.allow # keys that may submit, ask status and use kv
/// security: curve                   # or none: a trusted network, no keys (never the default)
/// log-level: info
/// replicas: 3                       # copies of each persistent object
/// queue-depth: 1                    # jobs per slot; past 1 they are prefetched (short tasks never wait)
/// ```
public struct PeerConfig: Sendable {
    public var listen = "tcp://127.0.0.1:7101"
    public var advertise: String?
    public var seeds: [String] = []
    public var knownPeers: String?
    public var dataDirectory = ".shoal/peer"
    public var slots = ProcessInfo.processInfo.activeProcessorCount
    public var key: String?
    public var peersAllow: String?
    public var clientsAllow: String?
    public var security: Security = .curve
    public var logLevel = "info"
    /// How often membership probes (the protocol period), in milliseconds.
    public var protocolPeriodMs = 200
    /// Jobs the machine may hand the worker threads per slot. With more than one, a worker finds
    /// its next short task queued instead of waiting for the peer between two (`shoal bench
    /// peers`: empty tasks ran 1.6 times as fast with 4 as with 1), but the machine then counts
    /// slots × depth as running at once: it steals and keeps that many, so tasks of real length
    /// queue behind each other while other peers idle (fan-out.yaml on three peers: 1.5 s with 4,
    /// 1.1-1.3 s with 1), and the simulator, which runs every slot at once, no longer predicts
    /// it. 1 by default.
    public var queueDepth = 1
    /// Copies of each persistent object (R), on the peers of highest rendezvous weight.
    public var replicas = 3

    public enum Security: String, Sendable { case curve, none }

    public init() {}

    /// The address others reach this peer at.
    public var advertised: String { advertise ?? listen }

    static let keys = [
        "listen", "advertise", "seeds", "known-peers", "data-dir", "slots", "key", "peers-allow", "clients-allow",
        "security", "log-level", "protocol-period-ms", "replicas", "queue-depth",
    ]
    /// The fields that name files or folders (relative to the config file's folder there).
    static let pathKeys: Set<String> = ["known-peers", "data-dir", "key", "peers-allow", "clients-allow"]
    static let levels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]

    /// Reads `path`; a problem names the file, the line and the field.
    public static func load(path: String) throws(YAMLFileError) -> PeerConfig {
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw YAMLFileError(file: path, message: "cannot read the config: \(error.localizedDescription)")
        }
        return try parse(text, path: path)
    }

    public static func parse(_ text: String, path: String) throws(YAMLFileError) -> PeerConfig {
        var config = PeerConfig()
        let node: Node?
        do { node = try YAMLDiagnostics.compose(text) } catch {
            throw YAMLFileError(file: path, line: error.line, column: error.column, message: error.message)
        }
        guard let node else { return config }
        guard let mapping = node.mapping else {
            throw YAMLFileError(file: path, at: node, field: nil, message: "a peer config is a mapping of fields")
        }
        let base = URL(fileURLWithPath: path).deletingLastPathComponent()
        func relative(_ p: String) -> String { p.hasPrefix("/") ? p : base.appendingPathComponent(p).standardizedFileURL.path }
        for (k, v) in mapping {
            guard let key = k.string else { throw YAMLFileError(file: path, at: k, field: nil, message: "a field name must be text") }
            guard keys.contains(key) else {
                let hint = YAMLDiagnostics.closest(to: key, in: keys).map { " (did you mean '\($0)'?)" } ?? ""
                throw YAMLFileError(file: path, at: k, field: key, message: "unknown field\(hint)")
            }
            if key == "seeds" {
                guard let list = v.sequence else {
                    throw YAMLFileError(file: path, at: v, field: key, message: "must be a list of tcp://HOST:PORT addresses")
                }
                config.seeds = try list.map { (n) throws(YAMLFileError) in
                    guard let s = n.string, n.scalar != nil else {
                        throw YAMLFileError(file: path, at: n, field: key, message: "must be a list of tcp://HOST:PORT addresses")
                    }
                    return s
                }
                continue
            }
            // Every other field is one scalar, checked by `set` as a flag's text is.
            guard let text = v.string, v.scalar != nil, !text.isEmpty else {
                throw YAMLFileError(file: path, at: v, field: key, message: "must be a value, not \(YAMLDiagnostics.shown(v))")
            }
            do {
                try config.set(key, pathKeys.contains(key) ? relative(text) : text, source: path)
            } catch {
                throw YAMLFileError(file: path, at: v, field: key, message: error.message)
            }
        }
        try config.validate(file: path)
        return config
    }

    /// Overrides from `SHOAL_*` variables (`SHOAL_LISTEN`, `SHOAL_SEEDS` as a comma-separated list,
    /// `SHOAL_DATA_DIR`, `SHOAL_SLOTS`, ...).
    public mutating func apply(environment: [String: String]) throws(YAMLFileError) {
        for key in Self.keys {
            let name = "SHOAL_" + key.uppercased().replacingOccurrences(of: "-", with: "_")
            guard let value = environment[name] else { continue }
            try set(key, value, source: "environment variable \(name)")
        }
        try validate(file: "the environment")
    }

    /// Sets one field from text (a flag or a variable).
    public mutating func set(_ key: String, _ value: String, source: String) throws(YAMLFileError) {
        func fail(_ why: String) -> YAMLFileError { YAMLFileError(file: source, field: key, message: why) }
        switch key {
        case "listen": listen = value
        case "advertise": advertise = value
        case "seeds": seeds = value.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        case "known-peers": knownPeers = value
        case "data-dir": dataDirectory = value
        case "slots":
            guard let n = Int(value), (1...4_096).contains(n) else { throw fail("must be a number of task slots, 1 to 4096") }
            slots = n
        case "protocol-period-ms":
            guard let n = Int(value), (10...60_000).contains(n) else { throw fail("must be 10 to 60000 milliseconds") }
            protocolPeriodMs = n
        case "queue-depth":
            guard let n = Int(value), (1...64).contains(n) else { throw fail("must be 1 to 64 jobs per slot") }
            queueDepth = n
        case "replicas":
            guard let n = Int(value), (1...16).contains(n) else { throw fail("must be 1 to 16 copies") }
            replicas = n
        case "key": self.key = value
        case "peers-allow": peersAllow = value
        case "clients-allow": clientsAllow = value
        case "security":
            guard let s = Security(rawValue: value) else { throw fail("must be curve or none") }
            security = s
        case "log-level":
            guard Self.levels.contains(value) else { throw fail("must be one of \(Self.levels.joined(separator: ", "))") }
            logLevel = value
        default: throw fail("unknown field")
        }
    }

    func validate(file: String) throws(YAMLFileError) {
        for (field, address) in [("listen", listen), ("advertise", advertised)] + seeds.map({ ("seeds", $0) }) {
            guard PeerAddress.isTCP(address) else {
                throw YAMLFileError(file: file, field: field, message: "'\(address)' is not a tcp://HOST:PORT address")
            }
        }
        if advertise == nil, listen.contains("://0.0.0.0:") || listen.contains("://*:") {
            throw YAMLFileError(
                file: file, field: "advertise",
                message: "listening on every interface (\(listen)) needs the address others reach this peer at")
        }
        if security == .curve {
            for (field, value) in [("key", key), ("peers-allow", peersAllow)] where value == nil {
                throw YAMLFileError(file: file, field: field, message: "is required with security: curve (see shoal peer keygen)")
            }
        }
    }
}

/// Addresses as peers and clients write them.
public enum PeerAddress {
    /// Whether `address` is `tcp://HOST:PORT` with a port number.
    public static func isTCP(_ address: String) -> Bool {
        guard address.hasPrefix("tcp://"), let colon = address.lastIndex(of: ":"), colon > address.index(address.startIndex, offsetBy: 5)
        else { return false }
        let port = address[address.index(after: colon)...]
        return UInt16(port) != nil && address.count > "tcp://".count + port.count + 1
    }
}

/// The public keys of peers by address (`known-peers`: one `ADDRESS KEY` per line, `#` comments):
/// how a peer reaches its seeds and a client its peer under CurveZMQ, where the key must be known
/// before the first byte.
public struct KnownPeers: Sendable {
    public var keys: [String: CurveKey] = [:]
    public init() {}

    public static func read(_ path: String) throws(KeyFileError) -> KnownPeers {
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw KeyFileError(path: path, reason: "cannot read: \(error.localizedDescription)")
        }
        var known = KnownPeers()
        for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
            let parts = trimmed.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard parts.count == 2, PeerAddress.isTCP(String(parts[0])), let key = CurveKey(z85: String(parts[1])) else {
                throw KeyFileError(path: "\(path):\(n + 1)", reason: "expected 'tcp://HOST:PORT PUBLIC-KEY'")
            }
            known.keys[String(parts[0])] = key
        }
        return known
    }
}
