/** Report file names as the original service writes them: `all_<unix-ts>.json`. */
const REPORT_NAME = /^all_(\d+)\.json$/

/** The newest report name among `names`, if any. */
export function latestReport(names: string[]): string | undefined {
  return names
    .filter((n) => REPORT_NAME.test(n))
    .sort((a, b) => Number(REPORT_NAME.exec(a)![1]) - Number(REPORT_NAME.exec(b)![1]))
    .at(-1)
}
