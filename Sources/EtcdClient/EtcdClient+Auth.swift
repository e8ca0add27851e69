import Foundation
import GRPCCore

/// The access a role grants on a key range.
public enum Permission: Sendable, Hashable {
  case read, write, readWrite

  var proto: Authpb_Permission.TypeEnum {
    switch self {
    case .read: .read
    case .write: .write
    case .readWrite: .readwrite
    }
  }
}

extension EtcdClient {
  /// Exchanges credentials for a token. The client does this by itself when
  /// ``EtcdConfiguration/credentials`` is set; the token never appears in logs or errors.
  func authenticate(_ credentials: EtcdConfiguration.Credentials) async throws -> String {
    var request = Etcdserverpb_AuthenticateRequest()
    request.name = credentials.username
    request.password = credentials.password
    do {
      return try await self.authRPC.authenticate(request, options: self.callOptions()).token
    } catch let error as RPCError {
      var mapped = EtcdError(rpc: error)
      if mapped.code == .invalidArgument || mapped.code == .invalidToken { mapped.code = .authFailed }
      mapped.message = "authenticating as \(credentials.username): \(mapped.message)"
      throw mapped
    }
  }

  /// Turns authentication on (a `root` user with the `root` role must exist).
  public func authEnable() async throws(EtcdError) {
    try await self.unary(idempotent: false) { metadata, options in
      _ = try await self.authRPC.authEnable(Etcdserverpb_AuthEnableRequest(), metadata: metadata, options: options)
    }
  }

  /// Turns authentication off.
  public func authDisable() async throws(EtcdError) {
    try await self.unary(idempotent: false) { metadata, options in
      _ = try await self.authRPC.authDisable(Etcdserverpb_AuthDisableRequest(), metadata: metadata, options: options)
    }
  }

  /// Adds a user.
  public func userAdd(_ name: String, password: String) async throws(EtcdError) {
    var request = Etcdserverpb_AuthUserAddRequest()
    request.name = name
    request.password = password
    try await self.unary(idempotent: false) { [request] metadata, options in
      _ = try await self.authRPC.userAdd(request, metadata: metadata, options: options)
    }
  }

  public func userDelete(_ name: String) async throws(EtcdError) {
    var request = Etcdserverpb_AuthUserDeleteRequest()
    request.name = name
    try await self.unary(idempotent: false) { [request] metadata, options in
      _ = try await self.authRPC.userDelete(request, metadata: metadata, options: options)
    }
  }

  public func userChangePassword(_ name: String, password: String) async throws(EtcdError) {
    var request = Etcdserverpb_AuthUserChangePasswordRequest()
    request.name = name
    request.password = password
    try await self.unary(idempotent: false) { [request] metadata, options in
      _ = try await self.authRPC.userChangePassword(request, metadata: metadata, options: options)
    }
  }

  public func userGrantRole(_ user: String, role: String) async throws(EtcdError) {
    var request = Etcdserverpb_AuthUserGrantRoleRequest()
    request.user = user
    request.role = role
    try await self.unary(idempotent: false) { [request] metadata, options in
      _ = try await self.authRPC.userGrantRole(request, metadata: metadata, options: options)
    }
  }

  public func userRevokeRole(_ user: String, role: String) async throws(EtcdError) {
    var request = Etcdserverpb_AuthUserRevokeRoleRequest()
    request.name = user
    request.role = role
    try await self.unary(idempotent: false) { [request] metadata, options in
      _ = try await self.authRPC.userRevokeRole(request, metadata: metadata, options: options)
    }
  }

  public func userList() async throws(EtcdError) -> [String] {
    try await self.unary(idempotent: true) { metadata, options in
      try await self.authRPC.userList(Etcdserverpb_AuthUserListRequest(), metadata: metadata, options: options).users
    }
  }

  public func roleAdd(_ name: String) async throws(EtcdError) {
    var request = Etcdserverpb_AuthRoleAddRequest()
    request.name = name
    try await self.unary(idempotent: false) { [request] metadata, options in
      _ = try await self.authRPC.roleAdd(request, metadata: metadata, options: options)
    }
  }

  public func roleDelete(_ name: String) async throws(EtcdError) {
    var request = Etcdserverpb_AuthRoleDeleteRequest()
    request.role = name
    try await self.unary(idempotent: false) { [request] metadata, options in
      _ = try await self.authRPC.roleDelete(request, metadata: metadata, options: options)
    }
  }

  /// Grants `permission` on `range` to a role.
  public func roleGrantPermission(_ role: String, _ permission: Permission, on range: KeyRange) async throws(EtcdError) {
    var request = Etcdserverpb_AuthRoleGrantPermissionRequest()
    request.name = role
    request.perm.permType = permission.proto
    request.perm.key = Data(range.key)
    request.perm.rangeEnd = Data(range.rangeEnd)
    try await self.unary(idempotent: false) { [request] metadata, options in
      _ = try await self.authRPC.roleGrantPermission(request, metadata: metadata, options: options)
    }
  }

  /// Revokes whatever a role was granted on exactly `range`.
  public func roleRevokePermission(_ role: String, on range: KeyRange) async throws(EtcdError) {
    var request = Etcdserverpb_AuthRoleRevokePermissionRequest()
    request.role = role
    request.key = Data(range.key)
    request.rangeEnd = Data(range.rangeEnd)
    try await self.unary(idempotent: false) { [request] metadata, options in
      _ = try await self.authRPC.roleRevokePermission(request, metadata: metadata, options: options)
    }
  }

  public func roleList() async throws(EtcdError) -> [String] {
    try await self.unary(idempotent: true) { metadata, options in
      try await self.authRPC.roleList(Etcdserverpb_AuthRoleListRequest(), metadata: metadata, options: options).roles
    }
  }
}
