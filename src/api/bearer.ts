/**
 * The credential of an `authorization: Bearer <credential>` header, as sent (the admin token may
 * hold spaces; a JWT never does, so one with spaces is simply not valid); undefined for no header
 * or another scheme.
 */
export function bearerCredential(header: string | null | undefined): string | undefined {
  return header ? /^Bearer\s+(.+)$/i.exec(header)?.[1] : undefined;
}
