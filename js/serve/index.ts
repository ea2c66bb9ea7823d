/** `backup serve`: the local web page and JSON API (server in `./server.ts`, every read in `./data.ts`). */
export { serve, contentDisposition, PAGE_DIR } from './server'
export type { ServeOptions, Served } from './server'
export { BackupData, ServeError, checkPath } from './data'
export type { RestoreRequest, SearchFilters, SizesResult, StoredFile, TreeEntry, TreeResult } from './data'
