/// Tunables of the placement machine. Every table, batch and delay here has a bound; `clamped`
/// is what the machine actually uses.
public struct PlacementSettings: Sendable, Hashable {
    /// Replicas per object (R): the R live peers of highest rendezvous weight hold it. 1...16.
    public var replicas: Int
    /// Replica confirmations a put needs before it is acknowledged, capped by the replicas that
    /// exist: a put waits for `min(writeQuorum, R, live peers)`. Default R, that is every replica
    /// the view has: an acknowledged object then survives the loss of any R-1 of its replicas
    /// even before repair runs. A smaller quorum answers sooner and leaves the rest to repair.
    /// 1...`replicas`.
    public var writeQuorum: Int
    /// A put's `store` without a `stored` answer after this long is sent again to the replicas
    /// that have not confirmed.
    public var storeTimeout: Interval
    /// Times a put's `store` is sent to a replica (the first send included) before the put is
    /// given up with `putFailed`. 1...16.
    public var maxStoreAttempts: Int
    /// Most puts and gets this peer coordinates at once; one more fails at once. 1...65536.
    public var maxPendingRequests: Int
    /// A get round without every asked peer's answer after this long resends to the silent ones
    /// and asks the next peer of the ranking.
    public var getTimeout: Interval
    /// Rounds (`getTimeout`s) a get waits before it answers with the newest version found, even
    /// if some asked peers stayed silent. 1...16.
    public var maxGetRounds: Int
    /// Most peers one get asks: the R replicas first, then the next peers of the key's ranking
    /// (fall back when replicas are silent or all lack the key). `replicas`...64.
    public var maxGetPeers: Int
    /// Period of the repair walk (re-replication). A view change also starts a walk at once.
    public var repairInterval: Interval
    /// Most held objects one repair pass examines (a cursor over the sorted keys carries on from
    /// there next pass, so every object is visited). 1...65536.
    public var maxRepairPerPass: Int
    /// Most repair transfers (offers and the stores they lead to) outstanding at once; a pass
    /// that reaches it stops and the cursor resumes there. 1...4096.
    public var maxTransfersInFlight: Int
    /// A repair offer or store without an answer after this long is sent again.
    public var transferTimeout: Interval
    /// Times a repair offer or store is sent (the first send included) before the transfer is
    /// dropped; the object stays unconfirmed, so a later pass offers it again. 1...16.
    public var maxTransferAttempts: Int
    /// Most objects this peer holds. A `store` (or an `offer`) of one more key is refused
    /// (`PlacementCounters.objectsRefused`) and not answered, so its put is not acknowledged on
    /// this replica and its repair gives up after `maxTransferAttempts`; a key held already is
    /// always updated. Objects recovered from the shard are all kept. 1...67,108,864.
    public var maxObjects: Int
    /// Added to a store's and a transfer's timeout for every MiB of the object it carries: a
    /// large object takes its bytes' time to cross and to be written, and resending it early only
    /// adds more. Zero (the default, and the simulator's) keeps the fixed timeouts; a real peer
    /// sets it from the bandwidth it can count on.
    public var timeoutPerMiB: Interval

    /// `base` plus `timeoutPerMiB` for each MiB of `bytes`.
    public func timeout(_ base: Interval, bytes: UInt64) -> Interval {
        guard timeoutPerMiB.nanoseconds > 0 else { return base }
        let mib = Int64(clamping: bytes >> 20)
        return Interval(nanoseconds: base.nanoseconds &+ timeoutPerMiB.nanoseconds.multipliedReportingOverflow(by: mib).partialValue)
    }

    public init() {
        replicas = 3
        writeQuorum = 3
        storeTimeout = .milliseconds(100)
        maxStoreAttempts = 4
        maxPendingRequests = 1_024
        getTimeout = .milliseconds(100)
        maxGetRounds = 3
        maxGetPeers = 5
        repairInterval = .seconds(1)
        maxRepairPerPass = 256
        maxTransfersInFlight = 32
        transferTimeout = .milliseconds(200)
        maxTransferAttempts = 3
        maxObjects = 1 << 20
        timeoutPerMiB = .zero
    }

    /// The settings with every field forced into its documented range.
    public var clamped: PlacementSettings {
        var s = self
        s.replicas = min(max(1, replicas), 16)
        s.writeQuorum = min(max(1, writeQuorum), s.replicas)
        s.storeTimeout = max(.microseconds(1), storeTimeout)
        s.maxStoreAttempts = min(max(1, maxStoreAttempts), 16)
        s.maxPendingRequests = min(max(1, maxPendingRequests), 65_536)
        s.getTimeout = max(.microseconds(1), getTimeout)
        s.maxGetRounds = min(max(1, maxGetRounds), 16)
        s.maxGetPeers = min(max(s.replicas, maxGetPeers), 64)
        s.repairInterval = max(.microseconds(1), repairInterval)
        s.maxRepairPerPass = min(max(1, maxRepairPerPass), 65_536)
        s.maxTransfersInFlight = min(max(1, maxTransfersInFlight), 4_096)
        s.transferTimeout = max(.microseconds(1), transferTimeout)
        s.maxTransferAttempts = min(max(1, maxTransferAttempts), 16)
        s.maxObjects = min(max(1, maxObjects), 1 << 26)
        s.timeoutPerMiB = Interval(nanoseconds: min(max(0, timeoutPerMiB.nanoseconds), 1_000_000_000))
        return s
    }
}

/// What the machine carries of a value. The shell holds the real bytes (the simulator models
/// them by `content`); the machine only decides where they go.
///
/// Checksums: whoever creates a value computes `checksum` with `ObjectValue.checksum(of:bytes:)`
/// (the `init(bytes:content:)` does it). The machine verifies it on everything it receives (a
/// client put, a `store`, a get's answer, a recovered object) and drops what does not match. A
/// real shell sets `content` to a digest of the real bytes (and checks the bytes against it
/// when they arrive, as `ShardRecord` does on the shard); the simulator corrupts `content` or
/// `checksum` in flight to model a damaged transfer.
public struct ObjectValue: Sendable, Hashable, Codable {
    /// Size in bytes.
    public var bytes: UInt64
    /// Opaque payload the shell gives (simulator: a content hash; real shell: a digest of the bytes).
    public var content: UInt64
    /// `ObjectValue.checksum(of: content, bytes: bytes)` when intact.
    public var checksum: UInt64

    public init(bytes: UInt64, content: UInt64, checksum: UInt64) {
        self.bytes = bytes
        self.content = content
        self.checksum = checksum
    }

    /// A value with its checksum computed.
    public init(bytes: UInt64, content: UInt64) {
        self.init(bytes: bytes, content: content, checksum: ObjectValue.checksum(of: content, bytes: bytes))
    }

    /// BLAKE2b (libsodium) of `content` and `bytes` (16 bytes, little-endian), truncated to its
    /// first 8 bytes read little-endian. Deterministic on every platform.
    public static func checksum(of content: UInt64, bytes: UInt64) -> UInt64 {
        var input = (content.littleEndian, bytes.littleEndian)  // 16 bytes: content, then size
        return withUnsafeBytes(of: &input) { Checksum.blake2bWord($0) }
    }

    /// Whether `checksum` matches `content` and `bytes`.
    public var isIntact: Bool { checksum == ObjectValue.checksum(of: content, bytes: bytes) }
}

/// The version of a stored object, ordered by (stamp, writer): the last writer wins, and two
/// writers never produce the same version (the writer breaks a stamp tie).
public struct ObjectVersion: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// The coordinator's clock in nanoseconds, raised above every stamp it has seen for the key.
    /// At most `ObjectVersion.maxStamp`: a message with a larger one is dropped.
    public var stamp: UInt64
    /// The largest stamp made or accepted: a clock in nanoseconds is an `Instant` (`Int64`), so a
    /// larger one comes from no clock, and `stamp + 1` never overflows below it. A put of a key
    /// whose stamp has reached it fails: no version of this coordinator could be ordered after it.
    public static let maxStamp = UInt64(Int64.max)
    /// The peer that coordinated the put.
    public var writer: PeerID

    public init(stamp: UInt64, writer: PeerID) {
        self.stamp = stamp
        self.writer = writer
    }

    public static func < (a: ObjectVersion, b: ObjectVersion) -> Bool {
        a.stamp != b.stamp ? a.stamp < b.stamp : a.writer < b.writer
    }

    public var description: String { "\(stamp)@\(writer)" }
}

/// One version of a persistent named object.
public struct StoredObject: Sendable, Hashable {
    public var key: UInt64
    public var version: ObjectVersion
    public var value: ObjectValue

    public init(key: UInt64, version: ObjectVersion, value: ObjectValue) {
        self.key = key
        self.version = version
        self.value = value
    }
}

/// The messages of the placement protocol. The network may drop, duplicate or reorder them:
/// every handler is idempotent, and every request is retried by its sender (bounded).
public enum PlacementMessage: Sendable, Hashable {
    /// "Keep this version if it is newer than yours." Sent by a put's coordinator and by a
    /// repairing holder after `want`. Always answered with `stored`.
    indirect case store(StoredObject)
    /// "I hold this version of the key, or a newer one" (durably: sent after the persist).
    case stored(key: UInt64, version: ObjectVersion)
    /// Repair: "I hold this version; do you?"
    case offer(key: UInt64, version: ObjectVersion)
    /// Answer to `offer`: "I lack it (or hold an older one): send it."
    case want(key: UInt64, version: ObjectVersion)
    /// Answer to `offer`: "I hold it or a newer one."
    case have(key: UInt64, version: ObjectVersion)
    /// A get asks a peer for its newest version of `key`. `requestID` is the reader's own.
    case fetch(requestID: UInt64, key: UInt64)
    /// Answer to `fetch`: what the peer holds (nil: nothing).
    indirect case fetched(requestID: UInt64, key: UInt64, object: StoredObject?)
}

/// Timers the machine asks its shell to run; each comes back as `.timer(_)`. Stale ones are
/// ignored, so the shell never cancels a timer.
public enum PlacementTimer: Sendable, Hashable {
    /// A put's stores wait for answers (`storeTimeout`). `serial` is the machine's own id.
    case put(serial: UInt64)
    /// A get round is over (`getTimeout`).
    case get(serial: UInt64)
    /// A repair offer or store waits for its answer (`transferTimeout`).
    case transfer(serial: UInt64)
    /// Time for the next repair pass. Only the latest `tick` counts.
    case repair(tick: UInt64)
}

public enum PlacementEvent: Sendable, Hashable {
    /// The current live view: alive members, this peer included (any order, duplicates
    /// allowed; the machine sorts and dedups and always counts itself as live). A change starts
    /// a repair pass; the first one also starts the periodic repair timer.
    case members([PeerID])
    /// How many members the cluster has as this peer knows it, live or dead (not those that left
    /// for good). A put needs `min(writeQuorum, R, max(live replicas, this))` confirmations, so
    /// a peer cut off from the others (which sees only itself alive) cannot acknowledge a put
    /// with its own copy alone: on the minority side of a partition, puts fail instead.
    case clusterSize(Int)
    /// A client put arriving at this peer, which coordinates it. `requestID` is the client's and
    /// comes back in `putAcknowledged` or `putFailed`.
    case put(requestID: UInt64, key: UInt64, value: ObjectValue)
    /// A client read of `key`, answered by `getResult` with the newest version found.
    case get(requestID: UInt64, key: UInt64)
    case message(PlacementMessage, from: PeerID)
    case timer(PlacementTimer)
    /// After a restart with a kept shard: the objects it holds (any order). Nothing is persisted
    /// again; corrupt ones are dropped (and counted), repair fetches them back from other holders.
    case recovered([StoredObject])
}

/// What the shell must do. Apply a batch **in order**: a `persist` must be durable before any
/// `send` after it in the same batch leaves, because that send may be the `stored` ack (or the
/// `putAcknowledged`) that promises the object is on disk.
public enum PlacementDirective: Sendable, Hashable {
    /// Send a message (a real shell attaches the value's bytes to `store`).
    case send(PlacementMessage, to: PeerID)
    case schedule(PlacementTimer, after: Interval)
    /// Write this version durably to the local shard (it replaces any older version of the key).
    case persist(StoredObject)
    /// The put is durable on `min(writeQuorum, R, live)` current replicas.
    case putAcknowledged(requestID: UInt64, key: UInt64, version: ObjectVersion)
    /// The put could not be confirmed. Its version may still be on some replicas (and may win
    /// later under last-writer-wins); it is only not known to be durable.
    case putFailed(requestID: UInt64, key: UInt64, reason: String)
    /// The newest version the get found (nil: none of the peers asked holds the key).
    case getResult(requestID: UInt64, object: StoredObject?)
    /// The get was not started (too many pending requests).
    case getFailed(requestID: UInt64, key: UInt64, reason: String)
}

/// What the machine has done, for reports and tests.
public struct PlacementCounters: Sendable, Hashable, Codable {
    /// Coordinator: puts acknowledged.
    public var putsAcknowledged = 0
    /// Coordinator: puts given up (quorum not reached, too many pending, corrupt value).
    public var putsFailed = 0
    /// Coordinator: `store` messages sent again after `storeTimeout`.
    public var storeRetransmits = 0
    /// Replica: intact `store` messages received (stored or not).
    public var storesReceived = 0
    /// Replica: received versions written (`persist`), local puts included.
    public var objectsStored = 0
    /// Replica: received versions older than the one held (acked, not stored).
    public var staleStores = 0
    /// Reader: gets answered.
    public var getsAnswered = 0
    /// Reader: gets refused (too many pending requests).
    public var getsFailed = 0
    /// Repair: offers sent (retransmissions included).
    public var offersSent = 0
    /// Repair: stores sent after a `want` (re-replications; retransmissions included).
    public var transfersSent = 0
    /// Repair: bytes those stores carried.
    public var bytesTransferred: UInt64 = 0
    /// Repair: transfers dropped after `maxTransferAttempts` (a later pass retries).
    public var transfersAbandoned = 0
    /// Received values (stores, get answers) whose checksum did not match: dropped, and the
    /// transfer is retried by its sender's timeout (stores) or asked again (gets).
    public var corruptTransfers = 0
    /// Recovered objects whose checksum did not match: dropped.
    public var corruptRecovered = 0
    /// Messages that changed nothing: a store of the version already held, an answer already
    /// counted, a repeated `want`, a late or unknown answer, a put with a pending request id.
    public var duplicatesIgnored = 0
    /// Messages from other peers dropped as out of bounds (`PlacementMachine.acceptable`): a
    /// version stamp above `ObjectVersion.maxStamp`.
    public var messagesDropped = 0
    /// Stores and offers of a key not held refused because this peer holds `maxObjects` objects
    /// (local puts that would store here included).
    public var objectsRefused = 0

    public init() {}

    /// Adds another peer's counters (a run's totals).
    public mutating func add(_ o: PlacementCounters) {
        putsAcknowledged += o.putsAcknowledged
        putsFailed += o.putsFailed
        storeRetransmits += o.storeRetransmits
        storesReceived += o.storesReceived
        objectsStored += o.objectsStored
        staleStores += o.staleStores
        getsAnswered += o.getsAnswered
        getsFailed += o.getsFailed
        offersSent += o.offersSent
        transfersSent += o.transfersSent
        bytesTransferred &+= o.bytesTransferred
        transfersAbandoned += o.transfersAbandoned
        corruptTransfers += o.corruptTransfers
        corruptRecovered += o.corruptRecovered
        duplicatesIgnored += o.duplicatesIgnored
        messagesDropped += o.messagesDropped
        objectsRefused += o.objectsRefused
    }
}

/// Placement keys of persistent objects by name: the first 8 bytes of the BLAKE2b digest of
/// `object:` and the name (`PayloadDigest`), so every peer, client and simulated program computes
/// the same key for the same name.
public enum ObjectKey {
    public static func of(name: String) -> UInt64 {
        Array(("object:" + name).utf8).withUnsafeBytes { Checksum.blake2bWord($0) }
    }
}
