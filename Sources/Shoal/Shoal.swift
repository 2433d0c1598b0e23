@_exported import ShoalCore

/// The namespace of Shoal's public API for workflow authors.
public enum Shoal {}
