/**
 * The sidecar image reference given to `tollgate webhook --image`. Injected into every opted-in
 * pod, so it must be pinned: a version tag or a digest, never `latest` (or no tag, which means
 * latest), or pods made from one Deployment could run different sidecars.
 */
const DOMAIN =
  '(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?/)?';
const COMPONENT = '[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*';
const REFERENCE = new RegExp(
  `^(${DOMAIN}${COMPONENT}(?:/${COMPONENT})*)(?::([A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?(?:@(sha256:[a-f0-9]{64}))?$`,
);

/** What is wrong with an image reference, or null when it is a pinned reference. */
export function imageReferenceProblem(image: string): string | null {
  const m = REFERENCE.exec(image);
  if (m === null)
    return `${JSON.stringify(image)} is not an image reference (registry/repository:tag or @sha256:digest)`;
  const [, , tag, digest] = m;
  if (digest !== undefined) return null;
  if (tag === undefined) return `${image} has no tag, which means latest; pin a version tag or a digest`;
  if (tag === 'latest') return `${image} uses the latest tag; pin a version tag or a digest`;
  return null;
}
