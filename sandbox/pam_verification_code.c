/*
 * A second authentication prompt for the sandbox's login node, like the "verification code"
 * that many HPC login nodes ask for after the password.
 *
 * PAM configuration:  auth required /path/pam_verification_code.so dir=/path/to/secrets
 * The expected code for user U is the first line of <dir>/U.otp (readable by root only).
 */
#define PAM_SM_AUTH
#include <security/pam_ext.h>
#include <security/pam_modules.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int read_expected(const char *dir, const char *user, char *out, size_t len)
{
    char path[4096];
    if (strchr(user, '/') != NULL)
        return -1;
    if (snprintf(path, sizeof path, "%s/%s.otp", dir, user) >= (int)sizeof path)
        return -1;
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    char *line = fgets(out, (int)len, f);
    fclose(f);
    if (line == NULL)
        return -1;
    out[strcspn(out, "\r\n")] = '\0';
    return out[0] == '\0' ? -1 : 0;
}

PAM_EXTERN int pam_sm_authenticate(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
    (void)flags;
    const char *dir = NULL;
    for (int i = 0; i < argc; i++)
        if (strncmp(argv[i], "dir=", 4) == 0)
            dir = argv[i] + 4;
    const char *user = NULL;
    if (dir == NULL || pam_get_user(pamh, &user, NULL) != PAM_SUCCESS || user == NULL)
        return PAM_AUTH_ERR;

    char expected[256];
    if (read_expected(dir, user, expected, sizeof expected) != 0)
        return PAM_AUTH_ERR;

    char *answer = NULL;
    if (pam_prompt(pamh, PAM_PROMPT_ECHO_OFF, &answer, "Verification code: ") != PAM_SUCCESS ||
        answer == NULL)
        return PAM_AUTH_ERR;
    int ok = strcmp(answer, expected) == 0;
    memset(answer, 0, strlen(answer));
    free(answer);
    return ok ? PAM_SUCCESS : PAM_AUTH_ERR;
}

PAM_EXTERN int pam_sm_setcred(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
    (void)pamh;
    (void)flags;
    (void)argc;
    (void)argv;
    return PAM_SUCCESS;
}
