import { Logger } from "@aws-lambda-powertools/logger";

/** One structured logger per process (Powertools: JSON lines with the Lambda context when there is one). */
export const logger = new Logger({ serviceName: "jobq" });
