import CSodium

/// BLAKE2b-256 checksums (libsodium `crypto_generichash`). Deterministic and side-effect free, so
/// pure machines may use it.
public enum Checksum {
    public static let byteCount = 32

    /// The 32-byte BLAKE2b digest of `bytes`.
    public static func blake2b(_ bytes: UnsafeRawBufferPointer) -> [UInt8] {
        _ = ensureSodium
        var out = [UInt8](repeating: 0, count: byteCount)
        let rc = out.withUnsafeMutableBufferPointer { o in
            crypto_generichash(
                o.baseAddress!, byteCount,
                bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), UInt64(bytes.count),
                nil, 0)
        }
        precondition(rc == 0, "crypto_generichash failed with \(rc)")
        return out
    }

    public static func blake2b(_ bytes: [UInt8]) -> [UInt8] {
        bytes.withUnsafeBytes { blake2b($0) }
    }

    /// The first 8 bytes of the 32-byte digest of `bytes`, as a little-endian word, with no
    /// allocation (value references and modelled checksums are this word; the simulator takes
    /// one for every task output).
    public static func blake2bWord(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        _ = ensureSodium
        var digest: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        let rc = withUnsafeMutableBytes(of: &digest) { o in
            crypto_generichash(
                o.baseAddress!.assumingMemoryBound(to: UInt8.self), byteCount,
                bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), UInt64(bytes.count),
                nil, 0)
        }
        precondition(rc == 0, "crypto_generichash failed with \(rc)")
        return UInt64(littleEndian: digest.0)
    }

    /// Whether `digest` is the checksum of `bytes`, compared in constant time.
    public static func verify(_ digest: some Collection<UInt8>, of bytes: UnsafeRawBufferPointer) -> Bool {
        guard digest.count == byteCount else { return false }
        let actual = blake2b(bytes)
        var diff: UInt8 = 0
        for (a, b) in zip(actual, digest) { diff |= a ^ b }
        return diff == 0
    }

    private static let ensureSodium: Void = {
        precondition(sodium_init() >= 0, "sodium_init failed")
    }()
}
