import CSodium

/// The on-disk (and in-memory) record format shared by every `KeyValueShard`:
///
///     [1 format byte][32-byte BLAKE2b-256 checksum][value bytes]
///
/// Format 2 (written today): the checksum is BLAKE2b-256 of
/// `UInt32 big-endian key length ++ key ++ value`, so a record that ends up under another key
/// (a flipped bit in a stored key "renames" the entry) fails verification just as a changed value
/// does. The length prefix keeps the split between key and value unambiguous.
///
/// Format 1 (written by earlier builds, still read): the checksum covers the value only. Such a
/// record is verified with that rule, so a changed value is still detected but a changed key is
/// not; it becomes format 2 the next time its key is written. Nothing rewrites records on read.
///
/// `LMDBShard` and `MemoryShard` both store exactly these bytes and decode them with
/// `ShardRecord.decode`, so corruption is detected and reported identically by both.
public enum ShardRecord {
    /// Checksum of the value only (read, never written).
    public static let formatV1: UInt8 = 1
    /// Checksum of the length-prefixed key and the value: the format every write uses.
    public static let formatV2: UInt8 = 2
    /// The format `encode` writes.
    public static let currentFormat = formatV2
    /// Bytes in front of the value: format byte plus checksum (the same for both formats).
    public static let headerByteCount = 1 + Checksum.byteCount
    /// The longest key a shard accepts. LMDB's default build limits keys to 511 bytes
    /// (`mdb_env_get_maxkeysize`); `MemoryShard` applies the same limit so both behave alike.
    public static let maxKeyLength = 511

    /// The record holding `value` under `key`.
    public static func encode(key: [UInt8], value: [UInt8]) -> [UInt8] {
        var record = [UInt8](repeating: 0, count: headerByteCount + value.count)
        record.withUnsafeMutableBytes { out in
            value.withUnsafeBytes { encode(key: key, value: $0, into: out) }
        }
        return record
    }

    /// Writes the record of `value` under `key` into `out`, which must be exactly
    /// `headerByteCount + value.count` bytes (used with LMDB's `MDB_RESERVE` to avoid a copy).
    public static func encode(key: [UInt8], value: UnsafeRawBufferPointer, into out: UnsafeMutableRawBufferPointer) {
        precondition(
            out.count == headerByteCount + value.count,
            "record buffer is \(out.count) bytes, expected \(headerByteCount + value.count)")
        out[0] = currentFormat
        let digest = checksum(key: key, value: value)
        for i in 0..<Checksum.byteCount { out[1 + i] = digest[i] }
        if value.count > 0 {
            UnsafeMutableRawBufferPointer(rebasing: out[headerByteCount...]).copyMemory(from: value)
        }
    }

    /// The value held in `record` stored under `key`, after checking its format byte and its
    /// checksum (format 2: over key and value; format 1: over the value).
    ///
    /// Throws `ShardError.malformedRecord` when the record is shorter than its header or has an
    /// unknown format byte, and `ShardError.checksumMismatch` when the checksum does not match;
    /// both name `table` and `key`. Never returns bytes that failed verification.
    public static func decode(_ record: UnsafeRawBufferPointer, table: ShardTable, key: [UInt8]) throws(ShardError)
        -> [UInt8]
    {
        guard record.count >= headerByteCount else { throw .malformedRecord(table: table, key: key) }
        let value = UnsafeRawBufferPointer(rebasing: record[headerByteCount...])
        let expected: [UInt8]
        switch record[0] {
        case formatV2: expected = checksum(key: key, value: value)
        case formatV1: expected = Checksum.blake2b(value)
        default: throw .malformedRecord(table: table, key: key)
        }
        // Constant-time comparison, like `Checksum.verify`.
        var difference: UInt8 = 0
        for i in 0..<Checksum.byteCount { difference |= expected[i] ^ record[1 + i] }
        guard difference == 0 else { throw .checksumMismatch(table: table, key: key) }
        return [UInt8](value)
    }

    /// `decode` as a `Result`: the verified value, or why `record` failed verification.
    public static func verify(_ record: UnsafeRawBufferPointer, table: ShardTable, key: [UInt8]) -> Result<
        [UInt8], ShardError
    > {
        do {
            return .success(try decode(record, table: table, key: key))
        } catch {
            return .failure(error)
        }
    }

    /// The format-2 checksum: BLAKE2b-256 of `UInt32 big-endian key.count ++ key ++ value`,
    /// hashed incrementally so a large value is never copied.
    public static func checksum(key: [UInt8], value: UnsafeRawBufferPointer) -> [UInt8] {
        _ = sodiumReady
        precondition(key.count <= Int(UInt32.max), "key of \(key.count) bytes cannot be length-prefixed")
        let length = UInt32(key.count).bigEndian
        var digest = [UInt8](repeating: 0, count: Checksum.byteCount)
        // libsodium declares the state 64-byte aligned (Swift sees it as an opaque pointer).
        withUnsafeTemporaryAllocation(byteCount: crypto_generichash_statebytes(), alignment: 64) { raw in
            let state = OpaquePointer(raw.baseAddress!)
            var rc = crypto_generichash_init(state, nil, 0, Checksum.byteCount)
            rc |= withUnsafeBytes(of: length) { update(state, $0) }
            rc |= key.withUnsafeBytes { update(state, $0) }
            rc |= update(state, value)
            rc |= digest.withUnsafeMutableBufferPointer {
                crypto_generichash_final(state, $0.baseAddress!, Checksum.byteCount)
            }
            precondition(rc == 0, "crypto_generichash failed with \(rc)")
        }
        return digest
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

    private static func update(_ state: OpaquePointer, _ bytes: UnsafeRawBufferPointer)
        -> Int32
    {
        crypto_generichash_update(state, bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), UInt64(bytes.count))
    }

    private static let sodiumReady: Void = {
        precondition(sodium_init() >= 0, "sodium_init failed")
    }()
}
