/**
 * The workload identities integration tests speak of, in one place (issue 14: 23 test files
 * each defined their own `PRODUCER`). The producer sends through its outbound sidecar; the
 * ingest service receives behind its inbound sidecar.
 */
export const TRUST_DOMAIN = 'example.org';
export const PRODUCER = `spiffe://${TRUST_DOMAIN}/producer`;
export const INGEST = `spiffe://${TRUST_DOMAIN}/ingest`;
