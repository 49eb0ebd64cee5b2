import { create, type DescFile, type DescMessage, type DescService, toBinary } from '@bufbuild/protobuf';
import { FileDescriptorProtoSchema } from '@bufbuild/protobuf/wkt';
import { Code, ConnectError, type ConnectRouter } from '@connectrpc/connect';
import {
  ServerReflection,
  type ServerReflectionRequest,
  ServerReflectionResponseSchema,
} from '../gen/grpc/reflection/v1/reflection_pb.js';
import {
  type ServerReflectionRequest as ServerReflectionRequestV1Alpha,
  ServerReflectionResponseSchema as ServerReflectionResponseSchemaV1Alpha,
  ServerReflection as ServerReflectionV1Alpha,
} from '../gen/grpc/reflection/v1alpha/reflection_pb.js';

/** Everything the server can describe, looked up by file name, symbol or extension. */
interface DescriptorIndex {
  readonly serviceNames: readonly string[];
  readonly fileByName: ReadonlyMap<string, DescFile>;
  readonly fileBySymbol: ReadonlyMap<string, DescFile>;
  /** extendee type name -> extension number -> the file declaring the extension */
  readonly extensionsOf: ReadonlyMap<string, ReadonlyMap<number, DescFile>>;
  encoded(file: DescFile): Uint8Array;
}

function indexDescriptors(
  services: readonly DescService[],
  extraFiles: readonly DescFile[],
): DescriptorIndex {
  const fileByName = new Map<string, DescFile>();
  const fileBySymbol = new Map<string, DescFile>();
  const extensionsOf = new Map<string, Map<number, DescFile>>();

  const addMessage = (file: DescFile, message: DescMessage) => {
    fileBySymbol.set(message.typeName, file);
    for (const field of message.fields) fileBySymbol.set(`${message.typeName}.${field.name}`, file);
    for (const oneof of message.oneofs) fileBySymbol.set(`${message.typeName}.${oneof.name}`, file);
    for (const nested of message.nestedMessages) addMessage(file, nested);
    addEnums(file, message.nestedEnums, message.typeName);
    addExtensions(file, message.nestedExtensions);
    extensionsOf.set(message.typeName, extensionsOf.get(message.typeName) ?? new Map());
  };
  // Enum values are siblings of their enum in protobuf's scoping: `pkg.VALUE`, not `pkg.Enum.VALUE`.
  const addEnums = (file: DescFile, enums: DescFile['enums'], scope: string) => {
    for (const descEnum of enums) {
      fileBySymbol.set(descEnum.typeName, file);
      for (const value of descEnum.values)
        fileBySymbol.set(scope ? `${scope}.${value.name}` : value.name, file);
    }
  };
  const addExtensions = (file: DescFile, extensions: DescFile['extensions']) => {
    for (const extension of extensions) {
      fileBySymbol.set(extension.typeName, file);
      const numbers = extensionsOf.get(extension.extendee.typeName) ?? new Map<number, DescFile>();
      numbers.set(extension.number, file);
      extensionsOf.set(extension.extendee.typeName, numbers);
    }
  };
  const addFile = (file: DescFile) => {
    if (fileByName.has(file.proto.name)) return;
    fileByName.set(file.proto.name, file);
    for (const message of file.messages) addMessage(file, message);
    addEnums(file, file.enums, file.proto.package);
    addExtensions(file, file.extensions);
    for (const service of file.services) {
      fileBySymbol.set(service.typeName, file);
      for (const method of service.methods) fileBySymbol.set(`${service.typeName}.${method.name}`, file);
    }
    for (const dependency of file.dependencies) addFile(dependency);
  };
  for (const service of services) addFile(service.file);
  for (const file of extraFiles) addFile(file);

  const encodedFiles = new Map<DescFile, Uint8Array>();
  return {
    serviceNames: [...new Set(services.map((service) => service.typeName))].sort(),
    fileByName,
    fileBySymbol,
    extensionsOf,
    encoded(file) {
      let bytes = encodedFiles.get(file);
      if (!bytes) {
        bytes = toBinary(FileDescriptorProtoSchema, file.proto);
        encodedFiles.set(file, bytes);
      }
      return bytes;
    },
  };
}

/** The answer to one request, shaped like the `message_response` oneof of v1 and v1alpha alike. */
type Answer =
  | { case: 'fileDescriptorResponse'; value: { fileDescriptorProto: Uint8Array[] } }
  | { case: 'allExtensionNumbersResponse'; value: { baseTypeName: string; extensionNumber: number[] } }
  | { case: 'listServicesResponse'; value: { service: { name: string }[] } }
  | { case: 'errorResponse'; value: { errorCode: number; errorMessage: string } };

function notFound(message: string): Answer {
  return { case: 'errorResponse', value: { errorCode: Code.NotFound, errorMessage: message } };
}

/**
 * The file and its transitive imports, the file first. Imports already sent on this stream are
 * left out (the protocol allows it), so a client exploring the API gets each file once.
 */
function withDependencies(index: DescriptorIndex, file: DescFile, sent: Set<string>): Answer {
  const files: Uint8Array[] = [];
  const queue = [file];
  const seen = new Set<string>();
  for (let next = queue.shift(); next; next = queue.shift()) {
    const name = next.proto.name;
    if (seen.has(name)) continue;
    seen.add(name);
    if (next === file || !sent.has(name)) {
      sent.add(name);
      files.push(index.encoded(next));
    }
    queue.push(...next.dependencies);
  }
  return { case: 'fileDescriptorResponse', value: { fileDescriptorProto: files } };
}

function answer(
  index: DescriptorIndex,
  request: ServerReflectionRequest | ServerReflectionRequestV1Alpha,
  sent: Set<string>,
): Answer {
  const query = request.messageRequest;
  switch (query.case) {
    case 'listServices':
      return {
        case: 'listServicesResponse',
        value: { service: index.serviceNames.map((name) => ({ name })) },
      };
    case 'fileByFilename': {
      const file = index.fileByName.get(query.value);
      return file ? withDependencies(index, file, sent) : notFound(`file "${query.value}" not found`);
    }
    case 'fileContainingSymbol': {
      const symbol = query.value.replace(/^\./, '');
      const file = index.fileBySymbol.get(symbol);
      return file ? withDependencies(index, file, sent) : notFound(`symbol "${symbol}" not found`);
    }
    case 'fileContainingExtension': {
      const { containingType, extensionNumber } = query.value;
      const file = index.extensionsOf.get(containingType)?.get(extensionNumber);
      return file
        ? withDependencies(index, file, sent)
        : notFound(`extension ${extensionNumber} of "${containingType}" not found`);
    }
    case 'allExtensionNumbersOfType': {
      const numbers = index.extensionsOf.get(query.value);
      if (!numbers) return notFound(`message type "${query.value}" not found`);
      return {
        case: 'allExtensionNumbersResponse',
        value: { baseTypeName: query.value, extensionNumber: [...numbers.keys()].sort((a, b) => a - b) },
      };
    }
    default:
      throw new ConnectError('server reflection request names no query', Code.InvalidArgument);
  }
}

/**
 * gRPC server reflection (grpc.reflection.v1 and its predecessor v1alpha), so grpcurl, buf curl,
 * Postman and grpcui find the API without a copy of the protos. Lists every service registered
 * on the router, and describes their files and imports plus `files` (e.g. files of error-detail
 * messages no service names), whether registered before or after it. The call is a bidi stream,
 * so it needs HTTP/2 (gRPC, or Connect over HTTP/2).
 */
export function registerReflection(router: ConnectRouter, files: readonly DescFile[] = []): ConnectRouter {
  // Built on first use, when the router holds every service (these two included).
  let index: DescriptorIndex | undefined;
  const getIndex = () => {
    index ??= indexDescriptors(
      router.handlers.map((handler) => handler.service),
      files,
    );
    return index;
  };
  return router
    .service(ServerReflection, {
      async *serverReflectionInfo(requests) {
        const sent = new Set<string>();
        for await (const request of requests) {
          yield create(ServerReflectionResponseSchema, {
            validHost: request.host,
            originalRequest: request,
            messageResponse: answer(getIndex(), request, sent),
          });
        }
      },
    })
    .service(ServerReflectionV1Alpha, {
      async *serverReflectionInfo(requests) {
        const sent = new Set<string>();
        for await (const request of requests) {
          yield create(ServerReflectionResponseSchemaV1Alpha, {
            validHost: request.host,
            originalRequest: request,
            messageResponse: answer(getIndex(), request, sent),
          });
        }
      },
    });
}
