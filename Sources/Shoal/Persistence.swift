import Foundation
import ShoalCore
import ShoalStore

/// How a persistent object is stored: its bytes in the shard's `values` table under its name, and
/// a `PersistentObjectInfo` record under the same name in `versions`, written in one atomic batch.
///
/// Values are written in Shoal's binary value encoding (`BinaryEncoder`, docs/value-encoding.md):
/// compact, and numeric arrays (`[Double]`, `Matrix`, `Tensor3`) are their raw bytes. Objects
/// written as JSON by earlier builds (`codec: "json"`) are still read. The info record itself stays
/// sorted-keys JSON, small and meant for people (`shoal kv get NAME --table versions`);
/// `shoal kv get NAME` shows a binary value's structure (`BinaryStructure`).
public struct PersistentObjectInfo: Codable, Sendable, Hashable {
    /// 1 for the first persist of the name, then one more each time it is overwritten.
    public var version: Int
    /// The Swift type that wrote it.
    public var type: String
    /// Size of the encoded value.
    public var bytes: Int
    /// How the value's bytes are encoded: `binaryCodec` (written today) or `jsonCodec` (written
    /// by earlier builds, still read). `load` decodes by it.
    public var codec: String
    /// The workflow that wrote it, if named.
    public var writer: String?

    /// Shoal's binary value encoding (`BinaryEncoder`): what `PersistentObjects.store` writes.
    public static let binaryCodec = "binary"
    /// Sorted-keys JSON: what builds before the binary encoding wrote.
    public static let jsonCodec = "json"
}

/// A persistent object that cannot be read as stored.
public struct PersistentObjectError: Error, Equatable, CustomStringConvertible {
    /// The object's name.
    public var name: String
    /// What is wrong.
    public var reason: String

    public var description: String { "persistent object '\(name)': \(reason)" }
}

public enum PersistentObjects {
    static func key(_ name: String) -> [UInt8] { Array(name.utf8) }

    /// Stores `value` under `name` (atomically with its metadata); returns the new version.
    ///
    /// The previous version is read and the new one written in one transaction
    /// (`KeyValueShard.update`), so two writers of one name, in this process or in two processes
    /// sharing the store, never both write the same version: each version number is given out
    /// once, and the last one written is the highest.
    @discardableResult
    public static func store<T: Encodable>(
        _ value: T, as name: String, in shard: any KeyValueShard, writer: String? = nil
    ) throws -> PersistentObjectInfo {
        // Encoded before the transaction: every other writer waits while it is open.
        let bytes = try BinaryEncoder().encode(value)
        let infoEncoder = JSONEncoder()
        infoEncoder.outputFormatting = [.sortedKeys]
        var stored: PersistentObjectInfo?
        try shard.update { reader in
            let previous = try info(name, in: reader)
            let next = PersistentObjectInfo(
                version: (previous?.version ?? 0) + 1, type: String(reflecting: T.self), bytes: bytes.count,
                codec: PersistentObjectInfo.binaryCodec, writer: writer)
            var batch = WriteBatch()
            batch.put(key(name), bytes, in: .values)
            batch.put(key(name), Array(try infoEncoder.encode(next)), in: .versions)
            stored = next
            return batch
        }
        return stored!
    }

    /// The value stored under `name`, decoded as `T` by the codec its info records.
    ///
    /// The value and its info are read in one snapshot (`KeyValueShard.read`), so a concurrent
    /// persist cannot pair one version's bytes with another's codec. A value without info (put
    /// with `shoal kv put`) is read as JSON, as earlier builds read every value.
    ///
    /// Throws `ShoalError.notFound` when nothing is stored under `name`, `ShoalError.typeMismatch`
    /// when the bytes do not decode as `T` (the message names the stored type and the decoder's
    /// error), and `PersistentObjectError` for a codec this build does not know. The binary
    /// encoding records lengths, not types: reading an object as another type of the same shape
    /// and width (`[Int]` as `[Double]`) is not detected; the recorded `type` is what tells.
    public static func load<T: Decodable>(_ name: String, as type: T.Type, from shard: any KeyValueShard) throws -> T {
        let (stored, metadata) = try shard.read { reader in
            (try reader.get(key(name), in: .values), try info(name, in: reader))
        }
        guard let bytes = stored else { throw ShoalError.notFound(name: name) }
        let codec = metadata?.codec ?? PersistentObjectInfo.jsonCodec
        guard codec == PersistentObjectInfo.binaryCodec || codec == PersistentObjectInfo.jsonCodec else {
            throw PersistentObjectError(
                name: name,
                reason: "its value is encoded as '\(codec)', which this build cannot read "
                    + "(it reads '\(PersistentObjectInfo.binaryCodec)' and '\(PersistentObjectInfo.jsonCodec)')")
        }
        do {
            if codec == PersistentObjectInfo.binaryCodec {
                return try BinaryDecoder().decode(T.self, from: bytes)
            }
            return try JSONDecoder().decode(T.self, from: Data(bytes))
        } catch {
            let storedType = metadata?.type ?? "unknown type"
            throw ShoalError.typeMismatch(name: name, expected: "\(T.self)", actual: "\(storedType) (\(error))")
        }
    }

    /// The metadata of `name`, or nil when it was never persisted (or written by `shoal kv put`).
    public static func info(_ name: String, in shard: any KeyValueShard) throws -> PersistentObjectInfo? {
        try decodeInfo(shard.get(key(name), in: .versions))
    }

    /// `info(_:in:)` read inside a transaction (`KeyValueShard.read` or `update`).
    public static func info(_ name: String, in reader: any ShardReader) throws -> PersistentObjectInfo? {
        try decodeInfo(reader.get(key(name), in: .versions))
    }

    private static func decodeInfo(_ bytes: [UInt8]?) throws -> PersistentObjectInfo? {
        guard let bytes else { return nil }
        return try JSONDecoder().decode(PersistentObjectInfo.self, from: Data(bytes))
    }
}

extension Workflow {
    /// Makes the value of `ref` (after every write submitted so far) a persistent object named
    /// `name`: it outlives the run and another application can `open` it. Returns at once; the
    /// write is a task of the workflow (so it runs when the value is ready, on a worker thread),
    /// and its failure surfaces at `barrier()` like any task's.
    ///
    /// Persists and opens of one name are ordered as the program wrote them: each accesses a datum
    /// that stands for the stored object (`inout` for a persist, `in` for an open), so the last
    /// persist of a name is the one that stays.
    ///
    /// On a simulated cluster, the object goes to the cluster's persistent objects (R replicas by
    /// rendezvous hashing): `persist` waits for the value and for every replica to have it on
    /// disk before it returns, and throws if it cannot.
    public func persist<T: Codable & Sendable>(_ ref: DataRef<T>, as name: String) throws {
        if let cluster { return try cluster.persist(ref.datum, as: name) }
        guard let store else { throw ShoalError.noStore(operation: "persist '\(name)'") }
        let writer = self.name
        let stored = storedObject(name)
        submit(name: "persist:\(name)", [.in(ref), .inout(stored)]) { context in
            try PersistentObjects.store(try context.read(ref), as: name, in: store, writer: writer)
        }
    }

    /// A datum holding the persistent object `name`, as stored by this or another application.
    /// When this workflow persists `name` earlier, the value is read after that persist is written.
    /// On a simulated cluster, it is the newest version on a live replica, read when `open` is called.
    public func open<T: Codable & Sendable>(_ name: String, as type: T.Type = T.self) throws -> DataRef<T> {
        if let cluster {
            let bytes = try cluster.open(name)
            _ = try PeerValues.decode(bytes, as: T.self)  // the program learns now if it is not a T
            let ref = DataRef<T>(datum: newDatum(), name: name)
            cluster.define(ref.datum, bytes: bytes)
            return ref
        }
        guard let store else { throw ShoalError.noStore(operation: "open '\(name)'") }
        guard let stored = persistedInThisRun(name) else {
            return value(try PersistentObjects.load(name, as: T.self, from: store), name: name)
        }
        let result = placeholder(T.self, name: name)
        submit(name: "open:\(name)", [.in(stored), .out(result)]) { context in
            try context.write(result, try PersistentObjects.load(name, as: T.self, from: store))
        }
        return result
    }
}
