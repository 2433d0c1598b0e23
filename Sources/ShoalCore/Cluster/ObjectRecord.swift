/// How one replica of a persistent object is laid out in the shard's `objects` table: the key is
/// the object's key as 8 big-endian bytes (so keys sort numerically), and the value is 48 bytes,
/// six little-endian `UInt64`s: key, version stamp, version writer, value size, value content,
/// value checksum. The shard adds and checks its BLAKE2b per entry (`ShardRecord`), as for
/// workflow records (`RecordCodec`).
///
/// A peer writes a record when its placement machine stores a replica (`PlacementDirective.persist`)
/// and reads them all back when it restarts with its store (`PlacementEvent.recovered`).
public enum ObjectRecord {
    /// Bytes of an encoded record.
    public static let byteCount = 48

    /// The shard key of object `key`: big-endian, so a scan visits objects in key order.
    public static func key(_ key: UInt64) -> [UInt8] {
        (0..<8).map { UInt8(truncatingIfNeeded: key >> (8 * (7 - UInt64($0)))) }
    }

    /// The object key a shard key names, or nil when it is not 8 bytes.
    public static func objectKey(_ shardKey: [UInt8]) -> UInt64? {
        guard shardKey.count == 8 else { return nil }
        return shardKey.reduce(0) { $0 << 8 | UInt64($1) }
    }

    /// The record of `object`.
    public static func encode(_ object: StoredObject) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(byteCount)
        let words = [
            object.key, object.version.stamp, object.version.writer.raw, object.value.bytes, object.value.content,
            object.value.checksum,
        ]
        for word in words {
            for i in 0..<8 { out.append(UInt8(truncatingIfNeeded: word >> (8 * UInt64(i)))) }
        }
        return out
    }

    /// The object in `bytes`, or nil when they are not a record (any length but 48). Total: it
    /// never traps, whatever the bytes. It checks the layout only; whether the value's checksum
    /// matches its content is the placement machine's question (`ObjectValue.isIntact`).
    public static func decode(_ bytes: [UInt8]) -> StoredObject? {
        guard bytes.count == byteCount else { return nil }
        var w = [UInt64](repeating: 0, count: 6)
        for k in 0..<6 {
            for i in 0..<8 { w[k] |= UInt64(bytes[8 * k + i]) << (8 * UInt64(i)) }
        }
        return StoredObject(
            key: w[0], version: ObjectVersion(stamp: w[1], writer: PeerID(raw: w[2])),
            value: ObjectValue(bytes: w[3], content: w[4], checksum: w[5]))
    }

    /// The object in a scanned entry of the `objects` table, or nil when the value is not a
    /// record or names another object than the entry's key does (which the shard's checksum over
    /// key and value makes a writer's bug, not damage on disk).
    public static func decode(_ entry: ShardEntry) -> StoredObject? {
        guard let object = decode(entry.value), objectKey(entry.key) == object.key else { return nil }
        return object
    }
}
