/// json, jsonArray, base64Encode, base64Decode (confd) and toJSON, toYAML (consul-template).
enum EncodingFunctions {
  static func call(_ function: Builtin, _ a: [TemplateValue]) throws(FunctionFailure) -> TemplateValue {
    switch function {
    case .json:
      let value = try decode(try string(a[0]))
      switch value {
      case .map, .null: return value
      default: throw .call("json: cannot unmarshal \(jsonKind(value)) into Go value of type map[string]interface {}")
      }
    case .jsonArray:
      let value = try decode(try string(a[0]))
      switch value {
      case .list, .null: return value
      default: throw .call("json: cannot unmarshal \(jsonKind(value)) into Go value of type []interface {}")
      }
    case .base64Encode:
      return .string(Base64.encode(a[0].isStringKind ? a[0].bytesValue : Array(try string(a[0]).utf8)))
    case .base64Decode:
      switch Base64.decode(Array(try string(a[0]).utf8)) {
      case .success(let bytes): return .bytes(bytes)
      case .failure(let error): throw .call("illegal base64 data at input byte \(error.offset)")
      }
    case .toJSON:
      do throws(JSON.SyntaxError) {
        return .bytes(try JSON.encode(a[0]))
      } catch {
        throw .call(error.message)
      }
    case .toYAML:
      return .string(StringFunctions.trimSpace(YAML.encode(a[0])))
    default:
      preconditionFailure("not an encoding function: \(function)")
    }
  }

  private static func decode(_ text: String) throws(FunctionFailure) -> TemplateValue {
    do throws(JSON.SyntaxError) {
      return try JSON.parse(Array(text.utf8))
    } catch {
      throw .call(error.message)
    }
  }

  private static func jsonKind(_ value: TemplateValue) -> String {
    switch value {
    case .map: return "object"
    case .list: return "array"
    case .string: return "string"
    case .double: return "number"
    case .bool: return "bool"
    default: return "value"
    }
  }
}
