/**
 * The process configuration as the adapters see it: the variables every jobq process reads
 * (handlers, workers, the local stack, and the CDK constructs that set them) and their parsing.
 * The parser itself is app/config.ts: the use cases' composition roots read it too, and an import
 * from app/ up into functions/ would point the wrong way. Adapters keep importing from here.
 */
export {
  ConfigError,
  config,
  type HandlerConfig,
  type QueueUrls,
  readConfig,
  readStreamConfig,
  type StreamConfig,
  streamConfig,
} from "../app/config";
