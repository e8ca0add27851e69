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
      let options = self.callOptions()
      return try await self.withDeadline(nil) { [request] in
        try await self.invoke(Etcdserverpb_Auth.Method.Authenticate.descriptor, request, [:], options, as: Etcdserverpb_AuthenticateResponse.self).token
      }
    } catch let error as RPCError {
      var mapped = EtcdError(rpc: error)
      if mapped.code == .invalidArgument || mapped.code == .invalidToken { mapped.code = .authFailed }
      mapped.message = "authenticating as \(credentials.username): \(mapped.message)"
      throw mapped
    }
  }

  /// Runs one Auth administration RPC (a mutation: not retried), discarding its response.
  private func admin<Request: Sendable, Response: Sendable>(
    _ request: Request,
    _ call: @escaping @Sendable (Etcdserverpb_Auth.Client<Transport>, Request, Metadata, CallOptions) async throws -> Response
  ) async throws(EtcdError) {
    _ = try await self.unary(idempotent: false) { metadata, options in
      try await call(self.authRPC, request, metadata, options)
    }
  }

  /// Turns authentication on (a `root` user with the `root` role must exist).
  public func authEnable() async throws(EtcdError) {
    try await self.admin(Etcdserverpb_AuthEnableRequest()) { try await $0.authEnable($1, metadata: $2, options: $3) }
  }

  /// Turns authentication off.
  public func authDisable() async throws(EtcdError) {
    try await self.admin(Etcdserverpb_AuthDisableRequest()) { try await $0.authDisable($1, metadata: $2, options: $3) }
  }

  /// Adds a user.
  public func userAdd(_ name: String, password: String) async throws(EtcdError) {
    var request = Etcdserverpb_AuthUserAddRequest()
    request.name = name
    request.password = password
    try await self.admin(request) { try await $0.userAdd($1, metadata: $2, options: $3) }
  }

  public func userDelete(_ name: String) async throws(EtcdError) {
    var request = Etcdserverpb_AuthUserDeleteRequest()
    request.name = name
    try await self.admin(request) { try await $0.userDelete($1, metadata: $2, options: $3) }
  }

  public func userChangePassword(_ name: String, password: String) async throws(EtcdError) {
    var request = Etcdserverpb_AuthUserChangePasswordRequest()
    request.name = name
    request.password = password
    try await self.admin(request) { try await $0.userChangePassword($1, metadata: $2, options: $3) }
  }

  public func userGrantRole(_ user: String, role: String) async throws(EtcdError) {
    var request = Etcdserverpb_AuthUserGrantRoleRequest()
    request.user = user
    request.role = role
    try await self.admin(request) { try await $0.userGrantRole($1, metadata: $2, options: $3) }
  }

  public func userRevokeRole(_ user: String, role: String) async throws(EtcdError) {
    var request = Etcdserverpb_AuthUserRevokeRoleRequest()
    request.name = user
    request.role = role
    try await self.admin(request) { try await $0.userRevokeRole($1, metadata: $2, options: $3) }
  }

  public func userList() async throws(EtcdError) -> [String] {
    try await self.unary(idempotent: true) { metadata, options in
      try await self.authRPC.userList(Etcdserverpb_AuthUserListRequest(), metadata: metadata, options: options).users
    }
  }

  public func roleAdd(_ name: String) async throws(EtcdError) {
    var request = Etcdserverpb_AuthRoleAddRequest()
    request.name = name
    try await self.admin(request) { try await $0.roleAdd($1, metadata: $2, options: $3) }
  }

  public func roleDelete(_ name: String) async throws(EtcdError) {
    var request = Etcdserverpb_AuthRoleDeleteRequest()
    request.role = name
    try await self.admin(request) { try await $0.roleDelete($1, metadata: $2, options: $3) }
  }

  /// Grants `permission` on `range` to a role.
  public func roleGrantPermission(_ role: String, _ permission: Permission, on range: KeyRange) async throws(EtcdError) {
    var request = Etcdserverpb_AuthRoleGrantPermissionRequest()
    request.name = role
    request.perm.permType = permission.proto
    request.perm.key = Data(range.key)
    request.perm.rangeEnd = Data(range.rangeEnd)
    try await self.admin(request) { try await $0.roleGrantPermission($1, metadata: $2, options: $3) }
  }

  /// Revokes whatever a role was granted on exactly `range`.
  public func roleRevokePermission(_ role: String, on range: KeyRange) async throws(EtcdError) {
    var request = Etcdserverpb_AuthRoleRevokePermissionRequest()
    request.role = role
    request.key = Data(range.key)
    request.rangeEnd = Data(range.rangeEnd)
    try await self.admin(request) { try await $0.roleRevokePermission($1, metadata: $2, options: $3) }
  }

  public func roleList() async throws(EtcdError) -> [String] {
    try await self.unary(idempotent: true) { metadata, options in
      try await self.authRPC.roleList(Etcdserverpb_AuthRoleListRequest(), metadata: metadata, options: options).roles
    }
  }
}
