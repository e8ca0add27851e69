import GRPCCore

/// A member's view of the cluster (Maintenance `Status`).
public struct MemberStatus: Sendable, Hashable {
  public var header: ResponseHeader
  /// etcd's version, e.g. `3.4.23`.
  public var version: String
  public var dbSize: Int64
  /// The leader's member ID (0 if there is none).
  public var leader: UInt64
  public var raftIndex: UInt64
  public var raftTerm: UInt64
  public var errors: [String]
  public var isLearner: Bool

  /// A status made without etcd (an in-memory etcd in tests).
  public init(header: ResponseHeader, version: String, dbSize: Int64 = 0, leader: UInt64 = 0, raftIndex: UInt64 = 0,
              raftTerm: UInt64 = 0, errors: [String] = [], isLearner: Bool = false) {
    self.header = header
    self.version = version
    self.dbSize = dbSize
    self.leader = leader
    self.raftIndex = raftIndex
    self.raftTerm = raftTerm
    self.errors = errors
    self.isLearner = isLearner
  }

  /// The cluster's ID; changes only if the cluster was wiped or restored.
  public var clusterID: UInt64 { self.header.clusterID }
  /// The store's current revision.
  public var revision: Int64 { self.header.revision }
}

/// One member of the cluster.
public struct Member: Sendable, Hashable {
  public var id: UInt64
  public var name: String
  public var peerURLs: [String]
  public var clientURLs: [String]
  public var isLearner: Bool
}

extension EtcdClient {
  /// Status of whichever member serves the request.
  public func status(timeout: Duration? = nil) async throws(EtcdError) -> MemberStatus {
    try await self.unary(idempotent: true, timeout: timeout) { metadata, options in
      let r = try await self.invoke(Etcdserverpb_Maintenance.Method.Status.descriptor, Etcdserverpb_StatusRequest(), metadata, options, as: Etcdserverpb_StatusResponse.self)
      return MemberStatus(header: ResponseHeader(r.header), version: r.version, dbSize: r.dbSize, leader: r.leader,
                          raftIndex: r.raftIndex, raftTerm: r.raftTerm, errors: r.errors, isLearner: r.isLearner)
    }
  }

  /// Defragments the backend of whichever member serves the request.
  public func defragment() async throws(EtcdError) {
    try await self.unary(idempotent: true, timeout: .seconds(120)) { metadata, options in
      _ = try await self.invoke(Etcdserverpb_Maintenance.Method.Defragment.descriptor, Etcdserverpb_DefragmentRequest(), metadata, options, as: Etcdserverpb_DefragmentResponse.self)
    }
  }

  /// The cluster's members.
  public func memberList() async throws(EtcdError) -> [Member] {
    try await self.unary(idempotent: true) { metadata, options in
      try await self.invoke(Etcdserverpb_Cluster.Method.MemberList.descriptor, Etcdserverpb_MemberListRequest(), metadata, options, as: Etcdserverpb_MemberListResponse.self)
        .members.map { Member(id: $0.id, name: $0.name, peerURLs: $0.peerUrls, clientURLs: $0.clientUrls, isLearner: $0.isLearner) }
    }
  }
}
