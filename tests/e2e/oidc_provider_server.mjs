// A real OpenID provider for the tests: the npm package `oidc-provider` (9.x) on 127.0.0.1.
//
//     node tests/e2e/oidc_provider_server.mjs SETTINGS.json
//
// SETTINGS.json is written by tests/e2e/oidc_provider.py:
//   {
//     "prefix": "<npm --prefix dir holding node_modules/oidc-provider>",
//     "port": 12345,
//     "issuer": "http://127.0.0.1:12345",
//     "clients": [<oidc-provider client metadata>, ...],
//     "jwks": {"keys": [<the provider's private signing JWKs>]},
//     "scopes": ["openid", "offline_access", "api:read", ...],
//     "cookieKeys": ["..."],
//     "features": {<merged over the defaults below>}
//   }
//
// Only the token endpoint side is configured now (client credentials with every client
// authentication method, introspection, revocation); the login side (interactions, accounts) is
// left at oidc-provider's development defaults for a later OIDC feature to extend in
// `buildConfiguration`.

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const settings = JSON.parse(readFileSync(process.argv[2], 'utf8'));

// oidc-provider is installed in a cache folder, not next to this file: resolve it from there.
const requireFromPrefix = createRequire(join(settings.prefix, 'package.json'));
const { default: Provider } = await import(
  pathToFileURL(requireFromPrefix.resolve('oidc-provider')).href
);

export function buildConfiguration(s) {
  return {
    clients: s.clients,
    jwks: s.jwks,
    scopes: s.scopes,
    cookies: { keys: s.cookieKeys },
    // Kong's client_secret_jwt default is HS512, which oidc-provider leaves out by default.
    clientAuthMethods: [
      'client_secret_basic',
      'client_secret_post',
      'client_secret_jwt',
      'private_key_jwt',
      'none',
    ],
    enabledJWA: {
      clientAuthSigningAlgValues: ['HS256', 'HS384', 'HS512', 'RS256', 'PS256', 'ES256', 'EdDSA'],
    },
    features: {
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      revocation: { enabled: true },
      ...(s.features || {}),
    },
    ttl: {
      ClientCredentials: s.clientCredentialsTtl || 600,
    },
  };
}

const provider = new Provider(settings.issuer, buildConfiguration(settings));

provider.on('server_error', (ctx, err) => console.error('server_error', err));
provider.on('grant.error', (ctx, err) => console.error('grant.error', err.message, err.error_description || ''));

const server = provider.listen(settings.port, '127.0.0.1', () => {
  console.log(`oidc-provider listening on ${settings.issuer}`);
});

const shutdown = () => {
  server.closeAllConnections?.();
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
};
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
