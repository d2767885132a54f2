import { fileURLToPath } from "node:url";
import { Duration, RemovalPolicy, Stack } from "aws-cdk-lib";
import * as apigateway from "aws-cdk-lib/aws-apigateway";
import * as apigwv2 from "aws-cdk-lib/aws-apigatewayv2";
import { WebSocketLambdaAuthorizer } from "aws-cdk-lib/aws-apigatewayv2-authorizers";
import { WebSocketLambdaIntegration } from "aws-cdk-lib/aws-apigatewayv2-integrations";
import type * as dynamodb from "aws-cdk-lib/aws-dynamodb";
import * as lambda from "aws-cdk-lib/aws-lambda";
import type * as nodejs from "aws-cdk-lib/aws-lambda-nodejs";
import * as logs from "aws-cdk-lib/aws-logs";
import type * as sqs from "aws-cdk-lib/aws-sqs";
import { Construct } from "constructs";
import { consumeJobStream } from "./job-stream-source";
import { grantTable, jobqFunction } from "./jobq-function";

/** functions/stream of this repository: connect, disconnect, message, broadcaster, authorizer. */
export const DEFAULT_STREAM_DIR = fileURLToPath(new URL("../functions/stream", import.meta.url));

export interface JobStreamProps {
  /** The Jobs table; its stream (store/tables.ts) feeds the broadcaster. */
  readonly jobsTable: dynamodb.ITable;
  /** Token hashes; the $connect authorizer reads them. */
  readonly tokensTable: dynamodb.ITable;
  /** Open connections (store/tables.ts connectionsTable). */
  readonly connectionsTable: dynamodb.ITable;
  /**
   * Directory of the stream's handler modules.
   * @default DEFAULT_STREAM_DIR
   */
  readonly handlersDir?: string;
  /** @default "v1" */
  readonly stageName?: string;
  /**
   * Steady-state messages and connections per second the stage admits.
   * @default 100
   */
  readonly throttlingRateLimit?: number;
  /** @default 200 */
  readonly throttlingBurstLimit?: number;
  /**
   * Stream records per broadcaster invocation.
   * @default 100
   */
  readonly batchSize?: number;
  /**
   * Retries of a batch the broadcaster could not deliver before it goes to the failure queue.
   * @default 3
   */
  readonly retryAttempts?: number;
  /** @default logs.RetentionDays.ONE_MONTH */
  readonly logRetention?: logs.RetentionDays;
  /** @default RemovalPolicy.RETAIN */
  readonly logRemovalPolicy?: RemovalPolicy;
}

/**
 * WS /jobs/stream in AWS: an API Gateway WebSocket API whose $connect is guarded by a REQUEST
 * authorizer on the Tokens table, connections kept in the Connections table, and a broadcaster
 * that reads the Jobs table's change stream (DynamoDB Streams: Lambda reads it at no request
 * charge) and posts each status change to the connections that may see it, through this API's
 * `@connections` management endpoint and nowhere else.
 */
export class JobStream extends Construct {
  public readonly api: apigwv2.WebSocketApi;
  public readonly stage: apigwv2.WebSocketStage;
  public readonly authorizerFunction: nodejs.NodejsFunction;
  public readonly connectFunction: nodejs.NodejsFunction;
  public readonly disconnectFunction: nodejs.NodejsFunction;
  public readonly messageFunction: nodejs.NodejsFunction;
  public readonly broadcaster: nodejs.NodejsFunction;
  /** Stream batches the broadcaster gave up on (their records, by shard and sequence number). */
  public readonly failedBatches: sqs.Queue;
  /** The stage's access log: a JSON line per connect, message and disconnect. */
  public readonly accessLogGroup: logs.LogGroup;
  /** What clients connect to: `wss://…/<stage>`. */
  public readonly url: string;
  /** `wss://<api id>.execute-api.<region>.<suffix>`: the URL's origin, independent of the stage. */
  public readonly origin: string;

  constructor(scope: Construct, id: string, props: JobStreamProps) {
    super(scope, id);
    const dir = props.handlersDir ?? DEFAULT_STREAM_DIR;
    const newFunction = (functionId: string, module: string, environment: Record<string, string>) =>
      jobqFunction(this, functionId, {
        entry: `${dir}/${module}.ts`,
        environment,
        logRetention: props.logRetention,
        logRemovalPolicy: props.logRemovalPolicy ?? RemovalPolicy.RETAIN,
      });
    const connections = { JOBQ_CONNECTIONS_TABLE: props.connectionsTable.tableName };

    this.authorizerFunction = newFunction("Authorizer", "authorizer", {
      JOBQ_TOKENS_TABLE: props.tokensTable.tableName,
    });
    grantTable(this.authorizerFunction, props.tokensTable, ["dynamodb:GetItem"]);
    this.connectFunction = newFunction("Connect", "connect", connections);
    grantTable(this.connectFunction, props.connectionsTable, ["dynamodb:PutItem"]);
    this.disconnectFunction = newFunction("Disconnect", "disconnect", connections);
    grantTable(this.disconnectFunction, props.connectionsTable, ["dynamodb:DeleteItem"]);
    this.messageFunction = newFunction("Message", "message", connections);
    grantTable(this.messageFunction, props.connectionsTable, ["dynamodb:UpdateItem"]);

    this.api = new apigwv2.WebSocketApi(this, "Api", {
      description: "jobq job stream (WS /jobs/stream)",
      routeSelectionExpression: "$request.body.action",
      connectRouteOptions: {
        integration: new WebSocketLambdaIntegration("ConnectIntegration", this.connectFunction),
        // No identity source: the token may come in the header or as ?token= (browsers), and
        // API Gateway would refuse a handshake lacking any listed source before asking.
        authorizer: new WebSocketLambdaAuthorizer("TokenAuthorizer", this.authorizerFunction, {
          identitySource: [],
        }),
      },
      disconnectRouteOptions: {
        integration: new WebSocketLambdaIntegration("DisconnectIntegration", this.disconnectFunction),
      },
      // ping and subscribe: the function's answer is the route response, sent back to the client.
      defaultRouteOptions: {
        integration: new WebSocketLambdaIntegration("MessageIntegration", this.messageFunction),
        returnResponse: true,
      },
    });
    // One line per connect, message and disconnect (who, which route, status): the stream's
    // counterpart of the REST API's access log, kept as long as every other log of the stack.
    this.accessLogGroup = new logs.LogGroup(this, "AccessLogs", {
      retention: props.logRetention ?? logs.RetentionDays.ONE_MONTH,
      removalPolicy: props.logRemovalPolicy ?? RemovalPolicy.RETAIN,
    });
    this.stage = new apigwv2.WebSocketStage(this, "Stage", {
      webSocketApi: this.api,
      accessLogSettings: {
        destination: new apigwv2.LogGroupLogDestination(this.accessLogGroup),
        format: apigateway.AccessLogFormat.custom(
          JSON.stringify({
            requestId: apigateway.AccessLogField.contextRequestId(),
            requestTime: apigateway.AccessLogField.contextRequestTime(),
            routeKey: "$context.routeKey",
            eventType: "$context.eventType",
            connectionId: "$context.connectionId",
            status: apigateway.AccessLogField.contextStatus(),
            sourceIp: apigateway.AccessLogField.contextIdentitySourceIp(),
            errorMessage: apigateway.AccessLogField.contextErrorMessage(),
            authorizerError: apigateway.AccessLogField.contextAuthorizerError(),
          }),
        ),
      },
      stageName: props.stageName ?? "v1",
      autoDeploy: true,
      throttle: {
        rateLimit: props.throttlingRateLimit ?? 100,
        burstLimit: props.throttlingBurstLimit ?? 200,
      },
    });
    this.url = this.stage.url;
    const stack = Stack.of(this);
    this.origin = `wss://${this.api.apiId}.execute-api.${stack.region}.${stack.urlSuffix}`;

    this.broadcaster = newFunction("Broadcaster", "broadcaster", {
      ...connections,
      JOBQ_STREAM_ENDPOINT: this.stage.callbackUrl,
    });
    // Fan-out reads the subscriber index and deletes connections found gone; nothing else.
    grantTable(this.broadcaster, props.connectionsTable, ["dynamodb:Query", "dynamodb:DeleteItem"]);
    // execute-api:ManageConnections on this API's stage's @connections only.
    this.stage.grantManagementApiAccess(this.broadcaster);

    this.failedBatches = consumeJobStream(this, this.broadcaster, props.jobsTable, {
      // Connected clients want what happens from now on; after a reconnect they resynchronise
      // with GET /jobs?updatedSince= (docs/stream.md).
      startingPosition: lambda.StartingPosition.LATEST,
      batchSize: props.batchSize ?? 100,
      bisectBatchOnError: true,
      reportBatchItemFailures: true,
      retryAttempts: props.retryAttempts ?? 3,
      maxRecordAge: Duration.hours(1),
    });
  }
}
