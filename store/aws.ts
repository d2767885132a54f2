/**
 * Options every AWS SDK client of jobq is created with. With an emulator endpoint (the local
 * stack, the tests) they carry explicit dummy credentials, so the SDK never walks its default
 * chain to the instance metadata address; in AWS the function's role supplies credentials.
 */
export function awsClientOptions(endpoint: string | undefined, region: string) {
  return endpoint
    ? { region, endpoint, credentials: { accessKeyId: "local", secretAccessKey: "local" } }
    : { region };
}
