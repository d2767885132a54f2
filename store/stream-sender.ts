import {
  ApiGatewayManagementApiClient,
  GoneException,
  PostToConnectionCommand,
} from "@aws-sdk/client-apigatewaymanagementapi";
import type { ServerMessage } from "../core/stream";
import { awsClientOptions } from "./aws";
import { traced } from "./tracing";

/**
 * Posts to stream connections through API Gateway's `@connections` management API: in AWS the
 * WebSocket stage's callback URL, locally the same API served by local/api-server.ts on loopback.
 */

export type SendOutcome = "sent" | "gone";

export interface ConnectionSender {
  /** "gone" when the connection no longer exists (410): its item should be deleted. */
  send(connectionId: string, message: ServerMessage): Promise<SendOutcome>;
}

export class ManagementApiSender implements ConnectionSender {
  private readonly client: ApiGatewayManagementApiClient;

  constructor(endpoint: string, region: string, local: boolean) {
    // In AWS the endpoint is the stage's callback URL and the role signs; locally it is loopback
    // with dummy credentials (awsClientOptions), so nothing ever reaches for real ones.
    this.client = traced(
      new ApiGatewayManagementApiClient(local ? awsClientOptions(endpoint, region) : { region, endpoint }),
    );
  }

  async send(connectionId: string, message: ServerMessage): Promise<SendOutcome> {
    try {
      await this.client.send(
        new PostToConnectionCommand({ ConnectionId: connectionId, Data: JSON.stringify(message) }),
      );
      return "sent";
    } catch (error) {
      if (error instanceof GoneException) return "gone";
      throw error;
    }
  }
}
