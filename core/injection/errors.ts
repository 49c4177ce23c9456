/** What kind of problem stopped an injection. */
export type InjectionErrorKind =
  /** An annotation is malformed (syntax, names, paths, sizes). */
  | 'annotation'
  /** An annotation is well formed but does not resolve: artifact or version missing, withdrawn, being deleted. */
  | 'resolution'
  /** The pod already uses a name, path or port the injection needs. */
  | 'conflict'
  /** The admission request itself is not something this webhook can handle. */
  | 'request';

/**
 * Every reason the webhook refuses to inject a pod. The message is written for the person who created the pod:
 * it names the annotation (when there is one), the entry and exactly what is wrong; the admission response
 * carries it verbatim after `strongroom: `.
 */
export class InjectionError extends Error {
  override readonly name = 'InjectionError';
  readonly kind: InjectionErrorKind;
  /** The annotation at fault, if the problem is in one. */
  readonly annotation: string | undefined;
  constructor(kind: InjectionErrorKind, message: string, options?: ErrorOptions & { annotation?: string }) {
    super(message, options);
    this.kind = kind;
    this.annotation = options?.annotation;
  }
}
