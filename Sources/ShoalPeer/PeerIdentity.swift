import Foundation
import ShoalCore
import ShoalTransport
import ShoalWire

/// How peers name each other. Under CurveZMQ a peer's id is derived from its public key (the first
/// 8 bytes, little-endian, of the key's BLAKE2b digest), so an id cannot be claimed without the
/// secret key: a receiver checks every message's sender against the key its connection proved. In
/// trusted-network mode (no keys) it is derived the same way from the address the peer advertises.
/// Either way every peer computes a seed's id from what it knows of the seed, with no exchange.
public enum PeerIdentity {
    public static func id(key: CurveKey) -> PeerID {
        PeerID(raw: key.bytes.withUnsafeBytes { Checksum.blake2bWord($0) })
    }

    public static func id(address: String) -> PeerID {
        PeerID(raw: Array(("peer:" + address).utf8).withUnsafeBytes { Checksum.blake2bWord($0) })
    }

    /// The id of the peer at `address` with public key `key` (nil: trusted mode, no key).
    public static func id(address: String, key: CurveKey?) -> PeerID {
        key.map { id(key: $0) } ?? id(address: address)
    }

    /// The address-book entry of the peer at `address` with `key`, its id derived from them.
    public static func contact(address: String, key: CurveKey?) -> WireContact {
        var c = WireContact()
        c.peer = id(address: address, key: key).raw
        c.address = address
        if let key { c.publicKey = Data(key.bytes) }
        return c
    }

    /// Whether `contact` names itself truthfully: its id is the one its key (or, with no key, its
    /// address) gives. Only such a contact enters an address book.
    public static func isConsistent(_ contact: WireContact) -> Bool {
        guard contact.peer != 0, PeerAddress.isTCP(contact.address) else { return false }
        var key: CurveKey?
        if !contact.publicKey.isEmpty {
            guard let k = CurveKey(bytes: Array(contact.publicKey)) else { return false }
            key = k
        }
        return id(address: contact.address, key: key).raw == contact.peer
    }
}

extension PeerID {
    /// The id as 16 hexadecimal digits (what `ready`, logs and `shoal status` print).
    public var hex: String {
        let digits = String(raw, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }
}
