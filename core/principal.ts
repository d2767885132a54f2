/** Who is calling: a user id, and whether it may see and act on every principal's jobs. */
export interface Principal {
  readonly id: string;
  readonly admin: boolean;
}
