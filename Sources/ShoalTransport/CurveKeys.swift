import CZMQ
import Foundation

/// A CurveZMQ public or secret key: 32 bytes, written as 40 characters of Z85 (ZeroMQ's base 85;
/// its alphabet includes `# & * % @ !`, so quote keys in YAML).
public struct CurveKey: Hashable, Sendable, CustomStringConvertible {
    public let bytes: [UInt8]

    public init?(bytes: [UInt8]) {
        guard bytes.count == 32 else { return nil }
        self.bytes = bytes
    }

    /// Parses 40 characters of Z85 (surrounding white space ignored); nil if it is not a key.
    public init?(z85 text: String) {
        let t = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard t.utf8.count == 40 else { return nil }
        var out = [UInt8](repeating: 0, count: 32)
        guard zmq_z85_decode(&out, t) != nil else { return nil }
        bytes = out
    }

    public var z85: String {
        var out = [CChar](repeating: 0, count: 41)
        _ = zmq_z85_encode(&out, bytes, 32)
        return cString(out)
    }

    /// The first 8 Z85 characters: enough to tell keys apart in a log line.
    public var short: String { String(z85.prefix(8)) }
    public var description: String { z85 }
}

/// Why a key file could not be read.
public struct KeyFileError: Error, CustomStringConvertible, Sendable {
    public let path: String
    public let reason: String
    public var description: String { "\(path): \(reason)" }
    public init(path: String, reason: String) {
        self.path = path
        self.reason = reason
    }
}

/// A CurveZMQ key pair. `shoal peer keygen` writes one as `NAME.key` (the secret key, mode 0600)
/// and `NAME.pub` (the public key): each file is one line of Z85.
public struct CurveKeyPair: Sendable {
    public let publicKey: CurveKey
    public let secretKey: CurveKey

    public init(publicKey: CurveKey, secretKey: CurveKey) {
        self.publicKey = publicKey
        self.secretKey = secretKey
    }

    /// A fresh pair from libzmq (libsodium's generator underneath).
    public static func generate() throws(ZMQError) -> CurveKeyPair {
        var pub = [CChar](repeating: 0, count: 41)
        var sec = [CChar](repeating: 0, count: 41)
        guard zmq_curve_keypair(&pub, &sec) == 0 else { throw ZMQError("zmq_curve_keypair") }
        return CurveKeyPair(publicKey: CurveKey(z85: cString(pub))!, secretKey: CurveKey(z85: cString(sec))!)
    }

    /// The pair whose secret key is `secret` (the public key is derived from it).
    public init?(secret: CurveKey) {
        var pub = [CChar](repeating: 0, count: 41)
        guard zmq_curve_public(&pub, secret.z85) == 0,
            let p = CurveKey(z85: cString(pub))
        else { return nil }
        publicKey = p
        secretKey = secret
    }

    /// Reads a secret key file (`NAME.key`); refuses one that others can read.
    public static func read(secretKeyFile path: String) throws(KeyFileError) -> CurveKeyPair {
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: path) else {
            throw KeyFileError(path: path, reason: "no such key file")
        }
        if let mode = (attributes[.posixPermissions] as? NSNumber)?.intValue, mode & 0o077 != 0 {
            throw KeyFileError(
                path: path,
                reason: "secret key file is readable by others (mode \(String(mode, radix: 8))); chmod 600 it")
        }
        let key = try CurveKey.read(file: path)
        guard let pair = CurveKeyPair(secret: key) else {
            throw KeyFileError(path: path, reason: "not a CurveZMQ secret key")
        }
        return pair
    }

    /// Writes `DIR/NAME.key` (mode 0600) and `DIR/NAME.pub`; refuses to overwrite either.
    public func write(directory: String, name: String) throws(KeyFileError) -> (secret: String, public: String) {
        let secretPath = (directory as NSString).appendingPathComponent("\(name).key")
        let publicPath = (directory as NSString).appendingPathComponent("\(name).pub")
        for p in [secretPath, publicPath] where FileManager.default.fileExists(atPath: p) {
            throw KeyFileError(path: p, reason: "already exists; not overwritten")
        }
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw KeyFileError(path: directory, reason: "cannot create the directory: \(error)")
        }
        // Create the secret file with 0600 from the start, so it is never readable by others.
        let fd = open(secretPath, O_WRONLY | O_CREAT | O_EXCL, 0o600)
        guard fd >= 0 else { throw KeyFileError(path: secretPath, reason: String(cString: strerror(errno))) }
        let line = Array((secretKey.z85 + "\n").utf8)
        let written = line.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        close(fd)
        guard written == line.count else { throw KeyFileError(path: secretPath, reason: "short write") }
        do {
            try (publicKey.z85 + "\n").write(toFile: publicPath, atomically: true, encoding: .utf8)
        } catch {
            throw KeyFileError(path: publicPath, reason: "\(error)")
        }
        return (secretPath, publicPath)
    }
}

extension CurveKey {
    /// Reads a key file: one line of Z85.
    public static func read(file path: String) throws(KeyFileError) -> CurveKey {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw KeyFileError(path: path, reason: "cannot read the key file")
        }
        guard let key = CurveKey(z85: text) else {
            throw KeyFileError(path: path, reason: "not a CurveZMQ key (expected one line of 40 Z85 characters)")
        }
        return key
    }

    /// Reads an allow-list: a directory of `*.pub` files, or one file with a key per line
    /// (blank lines and lines starting with `#` ignored).
    public static func readAllowList(_ path: String) throws(KeyFileError) -> Set<CurveKey> {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw KeyFileError(path: path, reason: "no such allow-list")
        }
        if isDirectory.boolValue {
            let names = ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).filter {
                $0.hasSuffix(".pub")
            }
            var keys = Set<CurveKey>()
            for name in names.sorted() {
                keys.insert(try read(file: (path as NSString).appendingPathComponent(name)))
            }
            return keys
        }
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw KeyFileError(path: path, reason: "cannot read the allow-list")
        }
        var keys = Set<CurveKey>()
        for (n, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            guard let key = CurveKey(z85: line) else {
                throw KeyFileError(path: "\(path):\(n + 1)", reason: "not a CurveZMQ public key")
            }
            keys.insert(key)
        }
        return keys
    }
}
