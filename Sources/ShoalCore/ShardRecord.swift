/// The on-disk (and in-memory) record format shared by every `KeyValueShard`:
///
///     [1 format byte = 1][32-byte BLAKE2b-256 checksum of the value][value bytes]
///
/// `LMDBShard` and `MemoryShard` both store exactly these bytes and decode them with
/// `ShardRecord.decode`, so corruption is detected and reported identically by both.
public enum ShardRecord {
    /// The only format written today.
    public static let formatV1: UInt8 = 1
    /// Bytes in front of the value: format byte plus checksum.
    public static let headerByteCount = 1 + Checksum.byteCount
    /// The longest key a shard accepts. LMDB's default build limits keys to 511 bytes
    /// (`mdb_env_get_maxkeysize`); `MemoryShard` applies the same limit so both behave alike.
    public static let maxKeyLength = 511

    /// The record holding `value`.
    public static func encode(_ value: [UInt8]) -> [UInt8] {
        var record = [UInt8](repeating: 0, count: headerByteCount + value.count)
        record.withUnsafeMutableBytes { out in
            value.withUnsafeBytes { encode($0, into: out) }
        }
        return record
    }

    /// Writes the record of `value` into `out`, which must be exactly
    /// `headerByteCount + value.count` bytes (used with LMDB's `MDB_RESERVE` to avoid a copy).
    public static func encode(_ value: UnsafeRawBufferPointer, into out: UnsafeMutableRawBufferPointer) {
        precondition(
            out.count == headerByteCount + value.count,
            "record buffer is \(out.count) bytes, expected \(headerByteCount + value.count)")
        out[0] = formatV1
        let digest = Checksum.blake2b(value)
        for i in 0..<Checksum.byteCount { out[1 + i] = digest[i] }
        if value.count > 0 {
            UnsafeMutableRawBufferPointer(rebasing: out[headerByteCount...]).copyMemory(from: value)
        }
    }

    /// The value held in `record`, after checking its format byte and checksum.
    ///
    /// Throws `ShardError.malformedRecord` when the record is shorter than its header or has an
    /// unknown format byte, and `ShardError.checksumMismatch` when the checksum does not match;
    /// both name `table` and `key`. Never returns bytes that failed verification.
    public static func decode(_ record: UnsafeRawBufferPointer, table: ShardTable, key: [UInt8]) throws(ShardError)
        -> [UInt8]
    {
        guard record.count >= headerByteCount, record[0] == formatV1 else {
            throw .malformedRecord(table: table, key: key)
        }
        let value = UnsafeRawBufferPointer(rebasing: record[headerByteCount...])
        guard Checksum.verify(record[1..<headerByteCount], of: value) else {
            throw .checksumMismatch(table: table, key: key)
        }
        return [UInt8](value)
    }

    /// The value size a record of `recordByteCount` bytes holds (0 for a malformed, short record).
    public static func valueByteCount(ofRecordBytes recordByteCount: Int) -> Int {
        max(0, recordByteCount - headerByteCount)
    }

    /// Whether `key` is acceptable to a shard whose longest key is `maxLength` bytes.
    public static func validate(key: [UInt8], maxLength: Int = maxKeyLength) throws(ShardError) {
        guard !key.isEmpty, key.count <= maxLength else {
            throw .invalidKey(length: key.count, maxLength: maxLength)
        }
    }
}
