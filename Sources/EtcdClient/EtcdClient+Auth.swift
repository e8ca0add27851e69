import Foundation
import GRPCCore
import SwiftProtobuf

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
  private func admin<Request: SwiftProtobuf.Message & Sendable, Response: SwiftProtobuf.Message & Sendable>(
    _ request: Request,
    _ method: MethodDescriptor,
    as response: Response.Type
  ) async throws(EtcdError) {
    _ = try await self.unary(idempotent: false) { metadata, options in
      try await self.invoke(method, request, metadata, options, as: Response.self)
    }
  }

  /// Turns authentication on (a `root` user with the `root` role must exist).
  public func authEnable() async throws(EtcdError) {
    try await self.admin(Etcdserverpb_AuthEnableRequest(), Etcdserverpb_Auth.Method.AuthEnable.descriptor, as: Etcdserverpb_AuthEnableResponse.self)
  }

  /// Turns authentication off.
  public func authDisable() async throws(EtcdError) {
    try await self.admin(Etcdserverpb_AuthDisableRequest(), Etcdserverpb_Auth.Method.AuthDisable.descriptor, as: Etcdserverpb_AuthDisableResponse.self)
  }

  /// Adds a user.
  public func userAdd(_ name: String, password: String) async throws(EtcdError) {
    var request = Etcdserverpb_AuthUserAddRequest()
    request.name = name
    request.password = password
    try await self.admin(request, Etcdserverpb_Auth.Method.UserAdd.descriptor, as: Etcdserverpb_AuthUserAddResponse.self)
  }

  public func userDelete(_ name: String) async throws(EtcdError) {
    var request = Etcdserverpb_AuthUserDeleteRequest()
    request.name = name
    try await self.admin(request, Etcdserverpb_Auth.Method.UserDelete.descriptor, as: Etcdserverpb_AuthUserDeleteResponse.self)
  }

  public func userChangePassword(_ name: String, password: String) async throws(EtcdError) {
    var request = Etcdserverpb_AuthUserChangePasswordRequest()
    request.name = name
    request.password = password
    try await self.admin(request, Etcdserverpb_Auth.Method.UserChangePassword.descriptor, as: Etcdserverpb_AuthUserChangePasswordResponse.self)
  }

  public func userGrantRole(_ user: String, role: String) async throws(EtcdError) {
    var request = Etcdserverpb_AuthUserGrantRoleRequest()
    request.user = user
    request.role = role
    try await self.admin(request, Etcdserverpb_Auth.Method.UserGrantRole.descriptor, as: Etcdserverpb_AuthUserGrantRoleResponse.self)
  }

  public func userRevokeRole(_ user: String, role: String) async throws(EtcdError) {
    var request = Etcdserverpb_AuthUserRevokeRoleRequest()
    request.name = user
    request.role = role
    try await self.admin(request, Etcdserverpb_Auth.Method.UserRevokeRole.descriptor, as: Etcdserverpb_AuthUserRevokeRoleResponse.self)
  }

  public func userList() async throws(EtcdError) -> [String] {
    try await self.unary(idempotent: true) { metadata, options in
      try await self.invoke(Etcdserverpb_Auth.Method.UserList.descriptor, Etcdserverpb_AuthUserListRequest(), metadata, options, as: Etcdserverpb_AuthUserListResponse.self).users
    }
  }

  public func roleAdd(_ name: String) async throws(EtcdError) {
    var request = Etcdserverpb_AuthRoleAddRequest()
    request.name = name
    try await self.admin(request, Etcdserverpb_Auth.Method.RoleAdd.descriptor, as: Etcdserverpb_AuthRoleAddResponse.self)
  }

  public func roleDelete(_ name: String) async throws(EtcdError) {
    var request = Etcdserverpb_AuthRoleDeleteRequest()
    request.role = name
    try await self.admin(request, Etcdserverpb_Auth.Method.RoleDelete.descriptor, as: Etcdserverpb_AuthRoleDeleteResponse.self)
  }

  /// Grants `permission` on `range` to a role.
  public func roleGrantPermission(_ role: String, _ permission: Permission, on range: KeyRange) async throws(EtcdError) {
    var request = Etcdserverpb_AuthRoleGrantPermissionRequest()
    request.name = role
    request.perm.permType = permission.proto
    request.perm.key = Data(range.key)
    request.perm.rangeEnd = Data(range.rangeEnd)
    try await self.admin(request, Etcdserverpb_Auth.Method.RoleGrantPermission.descriptor, as: Etcdserverpb_AuthRoleGrantPermissionResponse.self)
  }

  /// Revokes whatever a role was granted on exactly `range`.
  public func roleRevokePermission(_ role: String, on range: KeyRange) async throws(EtcdError) {
    var request = Etcdserverpb_AuthRoleRevokePermissionRequest()
    request.role = role
    request.key = Data(range.key)
    request.rangeEnd = Data(range.rangeEnd)
    try await self.admin(request, Etcdserverpb_Auth.Method.RoleRevokePermission.descriptor, as: Etcdserverpb_AuthRoleRevokePermissionResponse.self)
  }

  public func roleList() async throws(EtcdError) -> [String] {
    try await self.unary(idempotent: true) { metadata, options in
      try await self.invoke(Etcdserverpb_Auth.Method.RoleList.descriptor, Etcdserverpb_AuthRoleListRequest(), metadata, options, as: Etcdserverpb_AuthRoleListResponse.self).roles
    }
  }
}
