/* placeholder: the daemon entry point is being written */
int main(void)
{
    return 0;
}
