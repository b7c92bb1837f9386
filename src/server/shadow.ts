// Shadow mode's policy set: loaded, validated and hot-reloaded like the live one, but it
// only ever decides beside it (decide/pipeline.ts); its failures never stop the server
// from answering with the live set.

import type { Logger } from './logger.js';
import type { ServerMetrics } from './metrics.js';
import { PolicyStore } from './policy-store.js';

/**
 * Opens the shadow policy directory. A shadow set that does not load stops the start
 * (as the live set does), so nobody believes a comparison runs that does not.
 * @throws VerdictError POLICY_INVALID or POLICY_DIR_MISSING, naming the shadow directory's files
 */
export async function openShadowStore(dir: string, metrics: ServerMetrics, logger: Logger): Promise<PolicyStore> {
  const store = await PolicyStore.open(dir, {
    onReload: (outcome, status) => {
      if (outcome.ok) {
        metrics.setShadowPolicy(status.version);
        logger.info({ shadow: dir, version: outcome.version, changed: outcome.changed, rules: status.ruleCount }, 'shadow policies reloaded');
      } else {
        logger.error({ shadow: dir, error: outcome.error, comparingWith: status.version }, 'shadow policy reload refused; still comparing with the last good shadow set');
      }
    },
    onWatchError: (message) => logger.error({ shadow: dir, error: message }, 'watching the shadow policy directory failed; retrying'),
  });
  metrics.setShadowPolicy(store.current.version);
  logger.info({ shadow: dir, version: store.current.version, rules: store.current.rules.length }, 'shadow mode: every check is also decided by this set, and where it disagrees the decision log says so');
  return store;
}

/** What /readyz says of the shadow set. */
export function shadowStatus(dir: string, store: PolicyStore): { policies: string; version: string; loadedAt: string; lastReloadError: string | null } {
  const status = store.status();
  return { policies: dir, version: status.version, loadedAt: status.loadedAt.toISOString(), lastReloadError: status.lastReloadError };
}
