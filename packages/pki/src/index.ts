// Public API of @airlock/pki: CA, certificate issuance and checking, TLS policy.
export {};
