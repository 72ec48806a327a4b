// The SDK's own version, recorded in every task spec it builds (a test keeps it equal to package.json).
export const SDK_VERSION = '0.1.0';
