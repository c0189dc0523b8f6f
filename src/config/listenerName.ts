/**
 * The syntax of a listener name: it becomes a metric label and a log field, so the config
 * validator checks it and the admin API checks `?listener=` against it without loading the validator.
 */
export const LISTENER_NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/;
